"""What one generation asks for, as one value: prompts, settings, inputs, output files.

Every front end (`mgen generate`, batch, studio, the audiocraft compat layer, a server) builds
a `Request` and hands it to `validate`, which refuses everything a user can get wrong before
any model is planned or loaded, and settles what is left open (the output format, the output
file names). `jobs.run` then renders and writes it.

    request = validate(Request(prompts=("lofi beat",), settings=GenerateSettings(duration=8)))
    written = run(request, load_model(request.model, settings=request.settings, prompts=request.prompts), NullReporter())
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from musicgen_cli.engine.audio import AudioOptions, choose_format
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.errors import MgenError, ValidationError
from musicgen_cli.jobs.outputs import check_outputs, output_paths
from musicgen_cli.jobs.replay import check_weights
from musicgen_cli.text import clean

DEFAULT_MODEL = "small"


@dataclass(frozen=True)
class Request:
    """One generation: `settings.num_samples` clips of each prompt, written as clip + sidecar pairs.

    `settings` carries the seed, the sampling, the windows, the sections (`segments`) and the
    input files (`melody`, `continuation`); `audio` how clips become files.
    """

    prompts: tuple[str, ...]
    settings: GenerateSettings = GenerateSettings()
    audio: AudioOptions = AudioOptions()
    model: str = DEFAULT_MODEL  # manifest key, repo id or model folder
    out: Path | None = None  # the file (numbered -1, -2... when several) or an existing folder
    out_dir: Path = Path("output")  # where unnamed outputs go: <out_dir>/<slug of name_hint>.<format>
    name_hint: str | None = None  # what the default file name is made from (default: the first prompt)
    paths: tuple[Path, ...] | None = None  # the exact files, one per clip (settled by `validate` when None)
    overwrite: bool = False  # replace existing clips and their sidecars
    take: int | None = None  # keep only this clip of the batch (a replay of one recorded take)
    weights_sha256: str | None = None  # the weights that must make it (a replay); checked once loaded
    extra: Mapping[str, Any] = field(default_factory=dict)  # more sidecar fields, after the standard ones
    # In-memory inputs at the model's rate, in place of the settings' files (the compat layer):
    prompt_audio: np.ndarray | None = None  # [batch, channels, samples]
    melody_audio: list | None = None  # one [channels, samples] or None per clip

    @property
    def clip_count(self) -> int:
        """How many files the request writes."""
        return 1 if self.take is not None else len(self.prompts) * self.settings.num_samples


def validate(request: Request) -> Request:
    """`request` checked completely, with its format and output files settled; a typed MgenError
    (one line and its fix) for the first thing wrong. Only what needs the loaded model (its
    window, whether it takes a melody, its weights) is left for later."""
    if isinstance(request.prompts, str) or not request.prompts or not all(isinstance(p, str) for p in request.prompts):
        raise ValidationError("prompts", "needs one or more prompts", "give the prompt as text")
    request = replace(request, prompts=tuple(clean(p) for p in request.prompts))  # no escape sequence reaches a name or a screen
    fmt = request.audio.format if request.paths else choose_format(request.out, request.audio.format)
    audio = replace(request.audio, format=fmt).validate()
    settings = request.settings
    settings.validate(max_window_s=float("inf"))  # the model's own window is checked once it is loaded
    if max(audio.fade_in_s, audio.fade_out_s) > settings.duration and not settings.continuation:
        raise MgenError(f"a fade is longer than the {settings.duration:g} s clip", "shorten --fade-in/--fade-out")
    if request.take is not None and not 0 <= request.take < len(request.prompts) * settings.num_samples:
        raise ValidationError("take", f"clip {request.take} is not in the batch", "give a clip index of the batch")
    check_weights(request.weights_sha256, request.model, request.model)  # a folder is checked now, a key once resolved
    if request.paths is not None:
        if len(request.paths) != request.clip_count:
            raise ValidationError("paths", f"{len(request.paths)} output files for {request.clip_count} clips", "give one file per clip")
        paths = [Path(p) for p in request.paths]
        check_outputs(paths, overwrite=request.overwrite)
    else:
        hint = request.name_hint if request.name_hint is not None else request.prompts[0]
        out = None if request.out is None else Path(request.out)
        paths = output_paths(out, hint, request.clip_count, fmt, Path(request.out_dir), overwrite=request.overwrite)
    return replace(request, audio=audio, paths=tuple(paths))


_SETTINGS = {f.name for f in fields(GenerateSettings)}
_AUDIO = {f.name for f in fields(AudioOptions)}
_PATHS = {"out", "out_dir", "continuation", "melody"}


def request_from_fields(values: Mapping[str, Any], base: Request | None = None) -> Request:
    """A Request from flat JSON-like fields: "prompt" or "prompts", "model", "out", "out_dir",
    "overwrite", any `GenerateSettings` field (duration, seed, melody...) and any `AudioOptions`
    field (format, normalize, fade_out_s...). Unknown names are refused; values are checked by
    `validate`, as for any request."""
    base = base or Request(prompts=("",))
    values = dict(values)
    if "prompt" in values:
        values["prompts"] = [values.pop("prompt")]
    known = _SETTINGS | _AUDIO | {"prompts", "model", "out", "out_dir", "overwrite", "name_hint"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValidationError(unknown[0], f"{', '.join(unknown)} is not a request field", f"use one of {', '.join(sorted(known))}")
    for key in _PATHS & set(values):
        values[key] = None if values[key] is None else Path(values[key])
    if values.get("segments") is not None:
        values["segments"] = tuple((float(start), str(text)) for start, text in values["segments"])
    prompts = values.pop("prompts", base.prompts)
    prompts = (prompts,) if isinstance(prompts, str) else tuple(prompts)
    return replace(
        base,
        prompts=prompts,
        settings=replace(base.settings, **{k: v for k, v in values.items() if k in _SETTINGS}),
        audio=replace(base.audio, **{k: v for k, v in values.items() if k in _AUDIO}),
        **{k: v for k, v in values.items() if k in {"model", "out", "out_dir", "overwrite", "name_hint"}},
    )
