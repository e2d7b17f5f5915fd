"""The library's entry point: a validated `Request` and a loaded model in, files out.

`render` generates the clips in memory, each with the sidecar record that will describe it;
`write` writes them as clip + sidecar pairs (levelled, encoded, measured) and says what it
wrote; `run` is the two in a row. They are apart so that clips made elsewhere (a worker
process; `Rendered` pickles: a numpy array and plain dicts) are written by one writer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musicgen_cli.errors import ValidationError
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.jobs.outputs import sidecar, sidecar_path, write_clips
from musicgen_cli.jobs.replay import check_weights
from musicgen_cli.jobs.request import Request

if TYPE_CHECKING:
    from musicgen_cli.engine.musicgen import GenerationResult, MusicGen


@dataclass(frozen=True)
class Rendered:
    """One generated clip, not yet written: [channels, samples] float32 at `sample_rate`, and
    the sidecar record (prompt, model, seed, settings, plan, timings...) that goes beside it;
    its "audio" levels and "audio_file" name are filled in when written."""

    clip: np.ndarray
    sample_rate: int
    sidecar: dict[str, Any]
    codes: np.ndarray | None = None  # [codebooks, frames] int64, the continued prompt's included; never written


@dataclass(frozen=True)
class Written:
    """One clip + sidecar pair on disk, and the sidecar record as written."""

    path: Path
    sidecar_path: Path
    sidecar: dict[str, Any]

    @property
    def clipped_samples(self) -> int:
        """Samples clipped at full scale when written (--normalize none/rms/loudness can clip)."""
        return int(self.sidecar["audio"]["clipped_samples"])

    @property
    def measured(self) -> dict[str, Any]:
        """The written file's levels: peak, true peak, RMS, loudness (engine.audio.measure)."""
        return self.sidecar["audio"]["measured"]


def render(request: Request, model: "MusicGen", reporter: Reporter | None = None) -> list[Rendered]:
    """The clips of a validated `request`, made by `model`, in memory; nothing is written."""
    previous, model.reporter = model.reporter, reporter or NullReporter()
    try:
        check_weights(request.weights_sha256, request.model, model.folder)
        prompts = request.prompts[0] if len(request.prompts) == 1 else list(request.prompts)
        result = model.generate(prompts, request.settings, prompt_audio=request.prompt_audio, melody_audio=request.melody_audio)
        return rendered_clips(result, model, request)
    finally:
        model.reporter = previous


def rendered_clips(result: "GenerationResult", model: "MusicGen", request: Request) -> list[Rendered]:
    """A generation's clips with their sidecar records (only the kept take of a replay)."""
    extra = dict(request.extra)
    if request.take is not None:  # the whole batch was re-run (its RNG draws are shared); one take is kept
        keep = request.take
        result = replace(result, clips=result.clips[keep : keep + 1], prompts=result.prompts[keep : keep + 1])
        extra = {"sample_index": keep, "num_samples": request.settings.num_samples, **extra}
    codes = None if result.codes is None else result.codes.cpu().numpy()
    if codes is not None and request.take is not None:
        codes = codes[request.take : request.take + 1]
    return [
        Rendered(clip, result.sample_rate, sidecar(result, model, index, {"audio": None, "audio_file": None, **extra}),
                 None if codes is None else codes[index])
        for index, clip in enumerate(result.clips)
    ]


def write(rendered: list[Rendered], request: Request, reporter: Reporter | None = None) -> list[Written]:
    """Write each rendered clip to the request's files as a clip + sidecar pair."""
    if request.paths is None or len(request.paths) != len(rendered):
        raise ValidationError("paths", "the request has no file for each clip", "validate the request first (jobs.request.validate)")
    paths = list(request.paths)
    (reporter or NullReporter()).phase("write", str(paths[0].parent))
    records = write_clips(
        [(r.clip, r.sample_rate, r.sidecar) for r in rendered], paths, options=request.audio, overwrite=request.overwrite
    )
    return [Written(path, sidecar_path(path), record) for path, record in zip(paths, records)]


def run(request: Request, model: "MusicGen", reporter: Reporter | None = None) -> list[Written]:
    """Render a validated `request` with `model` and write it; returns what was written."""
    return write(render(request, model, reporter), request, reporter)
