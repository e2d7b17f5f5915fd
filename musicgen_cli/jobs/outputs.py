"""Where results go: output names, the audio files and the JSON sidecar beside each.

The sidecar holds everything needed to reproduce a clip (prompt, model and revision, seed,
every setting) and what it cost (plan summary, timings, peaks). It never holds tokens.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from musicgen_cli import __version__
from musicgen_cli.engine import audio
from musicgen_cli.engine.prompts import slugify
from musicgen_cli.engine.validate import check_name_lengths, check_writable_folder
from musicgen_cli.errors import OutputExists
from musicgen_cli.jobs.pairs import recover_leftovers, write_pair
from musicgen_cli.store.cache import read_marker

if TYPE_CHECKING:  # the engine imports torch; writing files needs none of it
    from musicgen_cli.engine.musicgen import GenerationResult, MusicGen


def output_paths(
    out: Path | None,
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

    `--out` names the file (numbered -1, -2... when several); an existing folder as `--out`
    receives <slug of the hint>.<format>; no `--out` gives output/<slug>.<format>.
    """
    if out is not None and Path(out).is_dir():
        base = Path(out) / f"{slugify(name_hint)}.{fmt}"
    elif out is not None:
        base = Path(out) if Path(out).suffix.lstrip(".").lower() == fmt else Path(f"{out}.{fmt}")
    else:
        base = out_dir / f"{slugify(name_hint)}.{fmt}"
    paths = [base] if count == 1 else [base.with_name(f"{base.stem}-{i + 1}{base.suffix}") for i in range(count)]
    check_outputs(paths, overwrite=overwrite)
    return paths


def check_outputs(paths: list[Path], *, overwrite: bool, setting: str = "out") -> None:
    """Names fit the file system, the folder takes files, and no take is replaced unasked."""
    for path in paths:
        check_name_lengths(sidecar_path(path), setting)
        check_name_lengths(path, setting)
    for folder in dict.fromkeys(p.parent for p in paths):
        check_writable_folder(folder)
        recover_leftovers(folder)
    for path in paths:
        refuse_replacing(path, overwrite)


def refuse_replacing(path: Path, overwrite: bool) -> None:
    """OutputExists unless `path` and its sidecar are free (or may be replaced)."""
    side = sidecar_path(path)
    if path.is_dir() or side.is_dir():
        raise OutputExists(path if path.is_dir() else side, "is a folder", overwritable=False)
    owner = sidecar_owner(side)
    if owner not in (None, path.name) and (path.parent / owner).exists():
        raise OutputExists(side, f"belongs to {owner}, another take", overwritable=False)
    if not overwrite:
        for taken in (path, side):
            if taken.exists():
                raise OutputExists(taken)


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
    return {
        "key": entry.key if entry else None,
        "repo_id": entry.repo_id if entry else None,
        "revision": marker.get("commit") or marker.get("revision") or (entry.revision if entry else None),
        "folder": str(mg.folder),
        "random_weights": bool(entry and entry.random_weights),
        "weights_fingerprint": mg.weights_fingerprint,
    }


def sidecar(result: "GenerationResult", mg: "MusicGen", index: int, extra: dict | None = None) -> dict:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result.settings).items()}
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
        "device": f"cuda:{mg.plan.lm_device}" if isinstance(mg.plan.lm_device, int) else str(mg.plan.lm_device),
        "engine": result.settings.engine,
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
