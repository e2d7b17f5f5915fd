"""A studio session's takes on disk: their names, continuing a take, copying one out under a name."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from musicgen_cli.engine import audio
from musicgen_cli.engine.musicgen import GenerationResult
from musicgen_cli.engine.prompts import slugify
from musicgen_cli.errors import MgenError, ValidationError
from musicgen_cli.jobs.outputs import (
    check_outputs,
    check_target,
    output_paths,
    sidecar_path,
)
from musicgen_cli.store.cache import atomic_path
from musicgen_cli.text import check_name

_TAKE_FILE = re.compile(r"take-(\d+)-")


@dataclass
class Take:
    number: int
    prompt: str
    seed: int
    duration_s: float
    files: list[Path]
    model: str
    extends: int | None = None  # the take this one continues


def take_paths(out_dir: Path, number: int, prompt: str, fmt: str, count: int) -> list[Path]:
    """`take-NNN-<slug>.<fmt>` (numbered -1, -2 ... for several clips); refuses to overwrite."""
    paths = output_paths(Path(out_dir) / f"take-{number:03d}-{slugify(prompt, 40)}.{fmt}", prompt, count, fmt)
    taken = [q for p in paths for q in (p, sidecar_path(p)) if q.exists()]
    if taken:
        raise MgenError(f"{taken[0]} already exists", "use another --out-dir")
    return paths


def first_free_number(out_dir: Path) -> int:
    """Take numbers go on after those already in the folder, so a reused --out-dir is never overwritten."""
    found = [int(m.group(1)) for p in Path(out_dir).glob("take-*") if (m := _TAKE_FILE.match(p.name))]
    return max(found, default=0) + 1


def splice(result: GenerationResult, previous: np.ndarray, rate: int) -> GenerationResult:
    """A continuation with the previous take's exact samples in front.

    The engine's clip starts with EnCodec's re-encoding of the previous take's file; put the
    take the user heard there instead, followed by what the model generated after it.
    """
    channels = result.clips[0].shape[0]
    prev = audio.match_channels(audio.resample(previous, rate, result.sample_rate), channels)
    n = prev.shape[-1]
    clips = [np.concatenate([prev, clip[:, n:]], axis=-1).astype(np.float32) for clip in result.clips]
    return replace(result, clips=clips)


def keep_take(take: Take, name: str, out_dir: Path) -> list[Path]:
    """Copy a take's audio and sidecar to NAME (in the session folder unless NAME has a folder).

    Each file is written atomically and a pair is both files or neither; nothing is overwritten.
    """
    check_name(name, "keep")
    base = Path(name).expanduser()
    if base.suffix.lstrip(".").lower() in audio.FORMATS:
        base = base.with_suffix("")
    if len(base.parts) == 1 and not base.is_absolute():
        base = Path(out_dir) / base
    if not base.name or base.name in (".", "..") or name.endswith(("/", os.sep)):
        raise ValidationError("keep", f"{name} names a folder, not a take", "give a name, e.g. /keep 3 intro")
    check_target(base, "keep")  # /keep 1 /dev/null must not become /dev/null.wav
    pairs: list[tuple[Path, Path]] = []
    for i, src in enumerate(take.files):
        stem = base.name if len(take.files) == 1 else f"{base.name}-{i + 1}"
        dst = base.with_name(stem + src.suffix)
        pairs += [(src, dst), (sidecar_path(src), sidecar_path(dst))]
    for _, dst in pairs:
        check_target(dst, "keep")  # a device or a FIFO is named as one, not as a name already taken
        if dst.exists():
            raise MgenError(f"{dst} already exists", "choose another name")
    check_outputs([dst for _, dst in pairs[::2]], overwrite=False, setting="keep")
    done: list[Path] = []
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        for src, dst in pairs:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
            done.append(dst)
    except BaseException as exc:
        for dst in done:
            dst.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MgenError(f"cannot copy take {take.number} to {base}: {exc.strerror or exc}", "check the folder") from None
        raise
    return [dst for _, dst in pairs[::2]]
