"""A generation request as the API takes it: the fields of `GenerateSettings` and of
`AudioOptions` under their own names, plus the prompt, the model, the sections as `M:SS prompt`
lines, and the melody or continuation as the id of an upload or of an earlier take.

`checked` turns one into a validated `jobs.request.Request` (the validator `mgen generate`
uses), after the server's own limits, before the job is queued and again when it runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from musicgen_cli.engine.audio import AudioOptions
from musicgen_cli.engine.prompts import slugify
from musicgen_cli.engine.segments import parse_segments
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.engine.validate import MAX_SEED
from musicgen_cli.errors import ValidationError
from musicgen_cli.jobs.request import Request, request_from_fields, validate

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


def checked(body: dict[str, Any], inputs: dict[str, Path], limits: Limits, *, model: str, out_dir: Path,
            seed: int | None = None, number: int | None = None) -> Request:
    """The validated Request a body describes; MgenError (ValidationError naming the field) otherwise.

    `inputs` holds the files the melody and continuation ids resolved to; `seed` is the one
    drawn when the job was queued (None: the body's own, else a new one). With the job's
    `number` the clips are `NNNN-<slug>.<format>` in `out_dir`, never replacing a file;
    without it only the folder is checked (the job is not queued yet).
    """
    prompt = (body.get("prompt") or "").strip()
    duration = body.get("duration", GenerateSettings.duration)
    sections = None
    if body.get("segments"):
        parsed = parse_segments(body["segments"], source="segments")
        sections, duration = parsed.sections, parsed.end_s or duration
        prompt = prompt or sections[0][1]
    if not prompt:
        raise ValidationError("prompt", "is empty", "describe the music, e.g. \"a calm lofi beat\"")
    if len(prompt) > limits.max_prompt_chars:
        raise ValidationError("prompt", f"has {len(prompt)} characters, more than this server takes",
                              f"shorten it to {limits.max_prompt_chars} characters")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration > limits.max_duration_s:
        raise ValidationError("duration", f"{duration:g} s is longer than this server makes",
                              f"ask for at most {limits.max_duration_s:g} seconds")
    values = {f.name: body[f.name] for f in (*SETTING_FIELDS, *AUDIO_FIELDS) if body.get(f.name) is not None}
    chosen = seed if seed is not None else values.get("seed")
    values.update(
        prompt=prompt, duration=duration, seed=random.randint(0, MAX_SEED) if chosen is None else chosen,
        segments=sections, format=values.get("format", AUDIO_DEFAULTS.format), model=model, out_dir=out_dir,
        **{name: inputs.get(name) for name in INPUTS},
    )
    if number is None:
        values["overwrite"] = True  # nothing is written now: only the folder is checked
    else:
        values["out"] = out_dir / f"{number:04d}-{slugify(prompt, 40)}"
    return validate(request_from_fields(values))
