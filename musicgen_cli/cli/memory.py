"""Memory commands: the plan for a job, and what the machine holds now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from musicgen_cli.cli.options import (
    CacheDirOpt,
    CoresOpt,
    GpuMemOpt,
    JsonOpt,
    MaxVramOpt,
    NoGpuOpt,
    RamOpt,
    ReserveOpt,
    console,
    machine_for,
)
from musicgen_cli.errors import MgenError


def memory_plan_cmd(
    size: Optional[str] = typer.Option(None, "--size", help="small, medium or large (default: small)."),
    model_key: Optional[str] = typer.Option(None, "--model-key", help="Any manifest key or repo id instead of --size."),
    duration: float = typer.Option(30.0, "--duration", help="Seconds of audio to generate."),
    num_samples: int = typer.Option(1, "--num-samples", help="Clips generated together."),
    gpu_mem: Optional[list[str]] = GpuMemOpt,
    ram: Optional[str] = RamOpt,
    cores: Optional[int] = CoresOpt,
    no_gpu: bool = NoGpuOpt,
    reserve: Optional[str] = ReserveOpt,
    max_vram: Optional[str] = MaxVramOpt,
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: by device)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8 or int4 (CPU): a quarter or an eighth of the decoder's weight bytes."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Where every part of the model would live for this job, and how fast it would run. Loads nothing."""
    from musicgen_cli.planning.hardware import parse_size
    from musicgen_cli.planning.planner import Job, plan_memory
    from musicgen_cli.planning.sizing import entry_config
    from musicgen_cli.store.manifest import load_manifest

    if size and model_key:
        raise MgenError("--size and --model-key both name a model", "pass one of them")
    if size and size not in ("small", "medium", "large"):
        raise MgenError(f"unknown size {size!r}", "use --size small, medium or large")
    manifest = load_manifest(cache_dir)
    entry = manifest.get(model_key or size or "small")
    machine = machine_for(cache_dir, gpu_mem, ram, cores, no_gpu)
    config = entry_config(manifest, entry)
    plan = plan_memory(
        config,
        Job(duration_s=duration, num_samples=num_samples),
        machine,
        dtype=dtype,
        quantize=quantize,
        reserve_bytes=parse_size(reserve) if reserve else None,
        max_vram_bytes=parse_size(max_vram) if max_vram else None,
    )
    if not plan.uses_gpu:
        from musicgen_cli.engine.cpu_probe import plan_cpu_kernel

        plan_cpu_kernel(plan, config, cache_dir)
    if as_json:
        print(json.dumps({"model": entry.key, **plan.to_json()}, indent=2))
        return
    from musicgen_cli.ui.memory_views import plan_view

    title = f"Memory plan: {entry.key} ({entry.repo_id or 'local'}), {duration:g} s x {num_samples}"
    console.print(plan_view(plan, title))


def inspect_memory_cmd(
    watch: bool = typer.Option(False, "--watch", help="Refresh every second until Ctrl-C."),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """What the machine has and uses now: GPUs, RAM, per-core CPU, torch threads, GPU processes, cache size."""
    import time

    from rich.live import Live

    from musicgen_cli.planning.monitor import gpu_processes, snapshot
    from musicgen_cli.store.cache import cache_root, folder_size
    from musicgen_cli.ui.memory_views import readout_view

    root = cache_root(cache_dir)

    def view():
        return readout_view(snapshot(), gpu_processes(), folder_size(root), str(root))

    snapshot()  # CPU percentages are measured between calls: start the clock
    time.sleep(0.2)
    if not watch:
        console.print(view())
        return
    try:
        with Live(view(), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(1.0)
                live.update(view())
    except KeyboardInterrupt:
        pass
