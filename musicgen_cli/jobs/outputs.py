"""Where results go: output names, the audio files and the JSON sidecar beside each.

The sidecar holds everything needed to reproduce a clip (prompt, model and revision, seed,
every setting) and what it cost (plan summary, timings, peaks). It never holds tokens.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from musicgen_cli import __version__
from musicgen_cli.engine import audio
from musicgen_cli.engine.musicgen import GenerationResult, MusicGen
from musicgen_cli.engine.prompts import slugify
from musicgen_cli.errors import MgenError
from musicgen_cli.store.cache import atomic_write_text, read_marker
from musicgen_cli.store.fingerprint import weights_fingerprint


def output_paths(out: Path | None, name_hint: str, count: int, fmt: str, out_dir: Path = Path("output")) -> list[Path]:
    """`--out` as given (numbered when several), else output/<slug of the hint>.<fmt>."""
    if fmt not in audio.FORMATS:
        raise MgenError(f"unknown format {fmt!r}", f"use one of {', '.join(audio.FORMATS)}")
    base = Path(out) if out else out_dir / f"{slugify(name_hint)}.{fmt}"
    if base.suffix.lstrip(".").lower() not in audio.FORMATS:
        base = base.with_name(base.name + f".{fmt}")
    if base.exists() and base.is_dir():
        raise MgenError(f"--out {base} is a directory", "give a file name, e.g. --out song.wav")
    if count == 1:
        return [base]
    return [base.with_name(f"{base.stem}-{i + 1}{base.suffix}") for i in range(count)]


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def describe_model(mg: MusicGen) -> dict:
    marker = read_marker(mg.folder)
    entry = mg.entry
    return {
        "key": entry.key if entry else None,
        "repo_id": entry.repo_id if entry else None,
        "revision": marker.get("commit") or marker.get("revision") or (entry.revision if entry else None),
        "folder": str(mg.folder),
        "random_weights": bool(entry and entry.random_weights),
        "weights_fingerprint": weights_fingerprint(mg.folder),
    }


def sidecar(result: GenerationResult, mg: MusicGen, index: int, extra: dict | None = None) -> dict:
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
        "quantize": mg.plan.quantize,
        "windows": result.windows,
        "plan": mg.plan.to_json(),
        "timings_s": {"load": mg.loaded.load_seconds, **result.timings},
        "steps": result.steps,
        "steps_per_s": result.steps_per_s,
        "realtime_factor": result.realtime_factor,
        "peak_ram_bytes": result.peaks.get("rss_bytes"),
        "peak_vram_bytes": result.peaks.get("vram_bytes"),
        **({"composition": result.composition} if result.composition else {}),
        **(extra or {}),
    }


def write_result(
    result: GenerationResult,
    mg: MusicGen,
    paths: list[Path],
    *,
    options: audio.AudioOptions = audio.AudioOptions(),
    extra: dict | None = None,
) -> list[Path]:
    """Write each clip and its sidecar atomically; returns the audio paths."""
    for index, (clip, path) in enumerate(zip(result.clips, paths)):
        written = audio.save(path, clip, result.sample_rate, options)
        meta = sidecar(result, mg, index, {"audio": written, **(extra or {})})
        atomic_write_text(sidecar_path(path), json.dumps(meta, indent=2, default=str) + "\n")
    return paths
