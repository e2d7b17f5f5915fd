"""Memory commands: the plan for a job, and what the machine holds now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from musicgen_cli.arch import WINDOW_SECONDS
from musicgen_cli.cli.options import (
    CacheDirOpt,
    JsonOpt,
    MachineOptions,
    NumSamplesOpt,
    SamplingOptions,
    WindowOpt,
    console,
    group_options,
    uses,
)
from musicgen_cli.errors import MgenError


def _model_config(name: str, cache_dir: Optional[Path]):
    """(label, source, config) of a manifest key, repo id or model folder, without downloading."""
    from musicgen_cli.planning.sizing import entry_config, folder_config
    from musicgen_cli.store.manifest import load_manifest

    if Path(name).is_dir():
        return Path(name).name, str(Path(name).resolve()), folder_config(Path(name), cache_dir)
    manifest = load_manifest(cache_dir)
    entry = manifest.get(name)
    return entry.key, entry.repo_id or "local", entry_config(manifest, entry, cache_dir)


@uses(machine=MachineOptions)
def memory_plan_cmd(
    size: Optional[str] = typer.Option(None, "--size", help="Model size: small, medium, large (or any manifest key); default small."),
    model_key: Optional[str] = typer.Option(None, "--model-key", "-m", help="Manifest key, repo id, or model folder instead of --size."),
    duration: float = typer.Option(WINDOW_SECONDS, "--duration", "-d", help="Seconds of audio to generate (default: one window)."),
    num_samples: int = NumSamplesOpt,
    guidance: float = group_options(SamplingOptions)["guidance"],
    window: float = WindowOpt,
    decoder: str = group_options(SamplingOptions)["decoder"],
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
    *,
    machine: MachineOptions,
) -> None:
    """Where every part of the model would live for this job, and how fast it would run. Loads nothing."""
    from musicgen_cli.arch import max_window_seconds
    from musicgen_cli.engine.settings import GenerateSettings
    from musicgen_cli.engine.validate import check_decoder
    from musicgen_cli.planning.job import Job
    from musicgen_cli.planning.planner import plan_memory

    if size and model_key:
        raise MgenError("--size and --model-key both name a model", "pass one of them")
    check_decoder(decoder)
    plan_kwargs = machine.plan_kwargs()
    label, source, config = _model_config(model_key or size or "small", cache_dir)
    settings = GenerateSettings(duration=duration, num_samples=num_samples, guidance=guidance, window_s=window, decoder=decoder)
    job = Job.from_settings(settings, max_window_s=max_window_seconds(config))
    plan = plan_memory(config, job, machine.machine(cache_dir), **plan_kwargs)
    if not plan.uses_gpu:
        from musicgen_cli.engine.cpu_probe import plan_cpu_kernel

        machine.threads()  # the probe is keyed by (and measures at) the thread count asked for
        plan_cpu_kernel(plan, config, cache_dir)
    if as_json:
        print(json.dumps({"model": label, **plan.to_json()}, indent=2))
        return
    from musicgen_cli.ui.memory_views import plan_view

    console.print(plan_view(plan, f"Memory plan: {label} ({source}), {duration:g} s x {num_samples}"))


def inspect_memory_cmd(
    watch: bool = typer.Option(False, "--watch", help="Refresh every second until Ctrl-C."),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """What the machine has and uses now: GPUs, RAM, per-core CPU, torch threads, GPU processes, cache size."""
    import time

    from musicgen_cli.planning.monitor import gpu_processes, snapshot
    from musicgen_cli.store.cache import cache_root, folder_size
    from musicgen_cli.ui.memory_views import readout_view, watch_readout

    root = cache_root(cache_dir)

    def view():
        return readout_view(snapshot(all_gpus=True), gpu_processes(), folder_size(root), str(root))

    snapshot()  # CPU percentages are measured between calls: start the clock
    time.sleep(0.2)
    if watch:
        watch_readout(console, view)
    else:
        console.print(view())


def probe_cmd(
    num_threads: Optional[int] = typer.Option(None, "--num-threads", help="Threads to measure at (default: torch's)."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Measure this CPU's decode kernels again (each mode's speed, the KV cache's read rate) and
    keep the figures that plans use. Takes about a minute; run it on a quiet machine."""
    from dataclasses import asdict

    from musicgen_cli.engine.cpu_probe import reprobe
    from musicgen_cli.planning.hardware import configure_threads

    configure_threads(num_threads, None)
    probe, before = reprobe(cache_dir)
    if as_json:
        print(json.dumps({"probe": asdict(probe), "before": asdict(before) if before else None}, indent=2))
        return
    from musicgen_cli.ui.memory_views import probe_view

    console.print(probe_view(probe, before))
