"""Where results go: output names, the audio files and the JSON sidecar beside each.

The sidecar holds everything needed to reproduce a clip (prompt, model and revision, seed,
every setting) and what it cost (plan summary, timings, peaks). It never holds tokens.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from musicgen_cli import __version__
from musicgen_cli.decode.draws import draw_for
from musicgen_cli.engine import audio
from musicgen_cli.engine.prompts import slugify
from musicgen_cli.engine.validate import check_name_lengths, check_writable_folder
from musicgen_cli.errors import OutputExists, ValidationError
from musicgen_cli.jobs.pairs import recover_leftovers, write_pair
from musicgen_cli.store.cache import read_marker
from musicgen_cli.text import check_name

if TYPE_CHECKING:  # the engine imports torch; writing files needs none of it
    from musicgen_cli.engine.musicgen import GenerationResult, MusicGen


def out_target(raw: str | None) -> Path | None:
    """`--out` as typed: a name of ordinary characters; one ending in a slash is a folder to
    write into, made now (an existing file of that name is refused)."""
    if raw is None:
        return None
    check_name(raw, "out")
    path = Path(raw)
    if raw.endswith(("/", os.sep)):
        if path.exists() and not path.is_dir():
            raise ValidationError("out", f"{raw} names a folder, but {path} is a file", "give another folder, or drop the slash")
        check_target(path, "out", folder_ok=True)
        path.mkdir(parents=True, exist_ok=True)
    return path


def output_paths(
    out: Path | str | None,
    name_hint: str,
    count: int,
    fmt: str,
    out_dir: Path = Path("output"),
    *,
    overwrite: bool = False,
) -> list[Path]:
    """The files a job will write in format `fmt` (settled: `engine.audio.choose_format`),
    checked before any work: names short enough, folder writable, nothing already there unless
    `overwrite`.

    `--out` names the file (numbered -1, -2... when several); an existing folder as `--out`,
    or a name ending in a slash (a folder to make), receives <slug of the hint>.<format>; no
    `--out` gives output/<slug>.<format>. Only regular files are written: a device, a FIFO or
    a socket as `--out` is refused, as is a symbolic-link loop.
    """
    folder = isinstance(out, str) and out.endswith(("/", os.sep))
    if out is not None:
        check_name(str(out), "out")
        out = Path(out)
        check_target(out, "out", folder_ok=True)
        if folder and out.exists() and not out.is_dir():
            raise ValidationError("out", f"{out}/ names a folder, but {out} is a file", "give another folder, or drop the slash")
    fmt = audio.choose_format(None if folder else out, fmt)
    if out is not None and (folder or out.is_dir()):
        base = out / f"{slugify(name_hint)}.{fmt}"
    elif out is not None:
        base = Path(out) if Path(out).suffix.lstrip(".").lower() == fmt else Path(f"{out}.{fmt}")
    else:  # a name mgen chose: running the same command again makes the next one, never a refusal
        base = out_dir / f"{slugify(name_hint)}.{fmt}"
        n = 1
        while not overwrite and _taken(_numbered(base, n), count):
            n += 1
        base = _numbered(base, n)
    paths = _takes(base, count)
    check_outputs(paths, overwrite=overwrite)
    return paths


def _takes(base: Path, count: int) -> list[Path]:
    return [base] if count == 1 else [base.with_name(f"{base.stem}-{i + 1}{base.suffix}") for i in range(count)]


def _numbered(base: Path, n: int) -> Path:
    return base if n == 1 else base.with_name(f"{base.stem}-{n}{base.suffix}")


def _taken(base: Path, count: int) -> bool:
    return any(p.exists() or p.is_symlink() or sidecar_path(p).exists() for p in _takes(base, count))


def check_outputs(paths: list[Path], *, overwrite: bool, setting: str = "out") -> None:
    """Names fit the file system, targets are regular files, the folder takes files, and no
    take is replaced unasked."""
    for path in paths:
        check_name_lengths(sidecar_path(path), setting)
        check_name_lengths(path, setting)
        check_target(path, setting)
        check_target(sidecar_path(path), setting)
    for folder in dict.fromkeys(p.parent for p in paths):
        check_target(folder, setting, folder_ok=True)
        check_writable_folder(folder)
        recover_leftovers(folder)
    for path in paths:
        refuse_replacing(path, overwrite)


def refuse_replacing(path: Path, overwrite: bool) -> None:
    """OutputExists unless `path` and its sidecar are free (or may be replaced)."""
    side = sidecar_path(path)
    check_target(path, "out")
    check_target(side, "out")
    if path.is_dir() or side.is_dir():
        raise OutputExists(path if path.is_dir() else side, "is a folder", overwritable=False)
    owner = sidecar_owner(side)
    if owner not in (None, path.name) and (path.parent / owner).exists():
        raise OutputExists(side, f"belongs to {owner}, another take", overwritable=False)
    if not overwrite:
        for taken in (path, side):
            if taken.exists():
                raise OutputExists(taken)


_KINDS = {
    stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def check_target(path: Path, setting: str, *, folder_ok: bool = False) -> None:
    """`path` is free, a regular file (or a folder when `folder_ok`): never a device, a FIFO,
    a socket or a symbolic-link loop, which would swallow, block on or fail a write."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValidationError(setting, f"{path} is a loop of symbolic links", "remove the link, or choose another name") from None
        if exc.errno == errno.ENOTDIR:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
        raise
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return
    if stat.S_ISDIR(mode):
        raise OutputExists(path, "is a folder", overwritable=False)
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    raise ValidationError(setting, f"{path} is {kind}, not a file mgen can write", "give the name of a file in a folder")


def sidecar_path(path: Path) -> Path:
    """<stem>.json beside <stem>.<format>; the sidecar names its audio file inside."""
    return path.with_suffix(".json")


def sidecar_owner(side: Path) -> str | None:
    """The audio file a sidecar describes (None: no sidecar, or one from before it said)."""
    try:
        return json.loads(side.read_text(encoding="utf-8")).get("audio_file")
    except (OSError, ValueError, AttributeError):
        return None


def describe_model(mg: "MusicGen") -> dict:
    marker = read_marker(mg.folder)
    entry = mg.entry
    # A model loaded by its folder (a replay's fallback, a path) still says which model it is:
    # the ready marker the cache wrote names its key and whether its weights are random.
    return {
        "key": entry.key if entry else marker.get("key"),
        "repo_id": entry.repo_id if entry else marker.get("repo_id"),
        "revision": marker.get("commit") or marker.get("revision") or (entry.revision if entry else None),
        "folder": str(mg.folder),
        "random_weights": bool(entry.random_weights if entry else marker.get("random_weights")),
        "weights_fingerprint": mg.weights_fingerprint,
    }


def sidecar(result: "GenerationResult", mg: "MusicGen", index: int, extra: dict | None = None) -> dict:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result.settings).items()}
    device = f"cuda:{mg.plan.lm_device}" if isinstance(mg.plan.lm_device, int) else str(mg.plan.lm_device)
    return {
        "mgen_version": __version__,
        "prompt": result.prompts[index],
        "model": describe_model(mg),
        "seed": result.seed,
        "sample_index": index,
        "num_samples": len(result.clips),
        "sample_rate": result.sample_rate,
        "channels": int(result.clips[index].shape[0]),
        "duration_s": result.clips[index].shape[-1] / result.sample_rate,
        "settings": settings,
        "dtype": mg.plan.lm_dtype,
        "device": device,
        "engine": result.settings.engine,
        "draw": draw_for(result.engine, device.split(":")[0], result.settings.greedy),
        "decoder": result.decoder or {"name": result.settings.decoder},
        "quantize": mg.plan.quantize,
        "windows": result.windows,
        "plan": mg.plan.to_json(),
        "timings_s": {"load": mg.loaded.load_seconds, **result.timings},
        "steps": result.steps,
        "steps_per_s": result.steps_per_s,
        "realtime_factor": result.realtime_factor,
        "speed_estimate": mg.plan.speed_check(result.steps_per_s),
        "peak_ram_bytes": result.peaks.get("rss_bytes"),
        "peak_vram_bytes": result.peaks.get("vram_bytes"),
        **({"composition": result.composition} if result.composition else {}),
        **(extra or {}),
    }


def write_clips(
    clips: list[tuple[np.ndarray, int, dict]], paths: list[Path], *, options: audio.AudioOptions, overwrite: bool
) -> list[dict]:
    """Write each (clip, sample rate, sidecar record) as a pair (see jobs.pairs): the clip levelled and encoded,
    its record completed with the "audio" levels measured and the "audio_file" name. Returns the
    records as written. Existing files are replaced only with `overwrite` (the caller checked what they are).
    """
    for path in paths:
        refuse_replacing(path, overwrite)
    written = []
    for (clip, rate, record), path in zip(clips, paths):
        record = {**record, "audio": {}, "audio_file": path.name}

        def write_audio(tmp: Path, clip=clip, rate=rate, path=path, levels=record["audio"]) -> None:
            # The format is settled by the final name; the file written is its temporary twin.
            levels.update(audio.save(tmp, clip, rate, options.for_path(path)))

        write_pair(path, sidecar_path(path), write_audio, lambda record=record: json.dumps(record, indent=2, default=str) + "\n")
        written.append(record)
    return written
