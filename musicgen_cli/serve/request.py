"""A generation request as the API takes it: the fields of `GenerateSettings` and of
`AudioOptions` under their own names, plus the prompt, the model, the sections as `M:SS prompt`
lines, and the melody or continuation as the id of an upload or of an earlier take.

`checked` turns one into the settings and output options of a job, through the same validators
as `mgen generate`, before the job is queued.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from musicgen_cli.arch import WINDOW_SECONDS
from musicgen_cli.engine.audio import AudioOptions
from musicgen_cli.engine.segments import parse_segments
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.engine.validate import MAX_SEED
from musicgen_cli.errors import ValidationError

# Sent as ids (melody, continuation) or as text (segments), not as the settings' own types.
BY_REFERENCE = ("continuation", "melody", "segments")
INPUTS = ("melody", "continuation")
SETTING_FIELDS = tuple(f for f in fields(GenerateSettings) if f.name not in BY_REFERENCE)
AUDIO_FIELDS = tuple(fields(AudioOptions))
AUDIO_DEFAULTS = AudioOptions(format="wav")


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server; each is refused with a 4xx naming it."""

    max_prompt_chars: int = 2000
    max_duration_s: float = 300.0
    max_upload_bytes: int = 20 * 1024 * 1024
    max_queue: int = 100


@dataclass(frozen=True)
class Checked:
    prompt: str
    settings: GenerateSettings  # seed always set: a re-run draws the same audio
    options: AudioOptions


def checked(body: dict[str, Any], inputs: dict[str, Path], limits: Limits, seed: int | None = None) -> Checked:
    """The job a request describes, every field checked; MgenError (ValidationError naming the field) otherwise.

    `inputs` holds the files the melody and continuation ids resolved to; `seed` is the one
    drawn when the job was queued (None: the request's own, else a new one).
    """
    prompt = (body.get("prompt") or "").strip()
    duration = body.get("duration", GenerateSettings.duration)
    sections = None
    if body.get("segments"):
        parsed = parse_segments(body["segments"], source="segments")
        sections = parsed.sections
        duration = parsed.end_s or duration
        prompt = prompt or sections[0][1]
    if not prompt:
        raise ValidationError("prompt", "is empty", "describe the music, e.g. \"a calm lofi beat\"")
    if len(prompt) > limits.max_prompt_chars:
        raise ValidationError("prompt", f"has {len(prompt)} characters, more than this server takes",
                              f"shorten it to {limits.max_prompt_chars} characters")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration > limits.max_duration_s:
        raise ValidationError("duration", f"{duration:g} s is longer than this server makes",
                              f"ask for at most {limits.max_duration_s:g} seconds")
    own = {f.name: body[f.name] for f in SETTING_FIELDS if f.name in body}
    chosen = seed if seed is not None else own.get("seed")
    if chosen is None:
        chosen = random.randint(0, MAX_SEED)
    settings = GenerateSettings(**{**own, "duration": duration, "seed": chosen, "segments": sections,
                                   **{name: inputs.get(name) for name in INPUTS}})
    settings.validate(WINDOW_SECONDS)  # the loaded model's own window is checked again when it runs
    options = replace(AUDIO_DEFAULTS, **{f.name: body[f.name] for f in AUDIO_FIELDS if body.get(f.name) is not None})
    options = options.validate()
    if max(options.fade_in_s, options.fade_out_s) > settings.duration and not settings.continuation:
        raise ValidationError("fade_out_s" if options.fade_out_s > settings.duration else "fade_in_s",
                              f"is longer than the {settings.duration:g} s clip", "shorten the fade")
    return Checked(prompt, settings, options)
