"""The `mgen` command line: parse options, call the engine, render with Rich."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import MgenError

app = typer.Typer(
    name="mgen",
    help="Run MusicGen text-to-music models on the hardware you own: plans memory, shows progress, writes WAVs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

CacheDirOpt = typer.Option(None, "--cache-dir", envvar="MGEN_CACHE_DIR", help="Model cache root (default: model-cache/ beside manifest.json).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"mgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Run MusicGen text-to-music models on the hardware you own.

    Start with `mgen models`, `mgen download small`, `mgen memory-plan --size small`,
    then `mgen generate "jazz trio"`.
    """


@app.command("models")
def models_cmd(cache_dir: Optional[Path] = CacheDirOpt, as_json: bool = JsonOpt) -> None:
    """List the manifest's models: key, repo id, cached or not, size on disk, capabilities."""
    from .cache import folder_size
    from .manifest import load_manifest

    manifest = load_manifest(cache_dir)
    rows = []
    for entry in manifest.entries.values():
        folder = manifest.folder(entry)
        caps = entry.capabilities
        rows.append(
            {
                "key": entry.key,
                "repo_id": entry.repo_id,
                "cached": manifest.is_cached(entry),
                "size_bytes": folder_size(folder),
                "folder": str(folder),
                "melody": caps.melody,
                "stereo": caps.stereo,
                "channels": caps.channels,
                "random_weights": entry.random_weights,
                "source": entry.source,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Models (cache: {manifest.root})")
    for col in ("key", "repo id", "cached", "size", "capabilities"):
        table.add_column(col)
    for row in rows:
        caps = ["stereo" if row["stereo"] else "mono"]
        caps += ["melody"] if row["melody"] else []
        caps += ["[yellow]random weights[/]"] if row["random_weights"] else []
        table.add_row(
            row["key"],
            row["repo_id"] or "(built locally)",
            "[green]yes[/]" if row["cached"] else "no",
            _human_bytes(row["size_bytes"]) if row["size_bytes"] else "-",
            ", ".join(caps),
        )
    console.print(table)


def _machine_for(cache_dir, gpu_mem, ram, cores, no_gpu):
    """The probed machine with any simulated parts (--gpu-mem, --ram, --cores, --no-gpu)."""
    from .hardware import parse_size, probe, simulate

    return simulate(
        probe(cache_dir),
        gpu_mem=[parse_size(s) for s in gpu_mem or []],
        ram=parse_size(ram) if ram else None,
        cores=cores,
        no_gpu=no_gpu,
    )


@app.command("memory-plan")
def memory_plan_cmd(
    size: Optional[str] = typer.Option(None, "--size", help="small, medium or large (default: small)."),
    model_key: Optional[str] = typer.Option(None, "--model-key", help="Any manifest key or repo id instead of --size."),
    duration: float = typer.Option(30.0, "--duration", help="Seconds of audio to generate."),
    num_samples: int = typer.Option(1, "--num-samples", help="Clips generated together."),
    gpu_mem: Optional[list[str]] = typer.Option(None, "--gpu-mem", help="Simulate a GPU of this size (repeat for several), e.g. 8GiB."),
    ram: Optional[str] = typer.Option(None, "--ram", help="Simulate this much RAM, e.g. 16GiB."),
    cores: Optional[int] = typer.Option(None, "--cores", help="Simulate this many CPU cores."),
    no_gpu: bool = typer.Option(False, "--no-gpu", help="Plan as if there were no GPU."),
    reserve: Optional[str] = typer.Option(None, "--reserve", help="VRAM to leave free per GPU (default: 8 % of the card, at least 512MiB)."),
    max_vram: Optional[str] = typer.Option(None, "--max-vram", help="Use at most this much VRAM per GPU."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: by device)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8 to halve the decoder's weights."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Where every part of the model would live for this job, and how fast it would run. Loads nothing."""
    from .hardware import parse_size
    from .manifest import load_manifest
    from .planner import Job, plan_memory
    from .sizing import entry_config

    if size and model_key:
        raise MgenError("--size and --model-key both name a model", "pass one of them")
    if size and size not in ("small", "medium", "large"):
        raise MgenError(f"unknown size {size!r}", "use --size small, medium or large")
    manifest = load_manifest(cache_dir)
    entry = manifest.get(model_key or size or "small")
    machine = _machine_for(cache_dir, gpu_mem, ram, cores, no_gpu)
    plan = plan_memory(
        entry_config(manifest, entry),
        Job(duration_s=duration, num_samples=num_samples),
        machine,
        dtype=dtype,
        quantize=quantize,
        reserve_bytes=parse_size(reserve) if reserve else None,
        max_vram_bytes=parse_size(max_vram) if max_vram else None,
    )
    if as_json:
        print(json.dumps({"model": entry.key, **plan.to_json()}, indent=2))
        return
    from .memory_views import plan_view

    title = f"Memory plan: {entry.key} ({entry.repo_id or 'local'}), {duration:g} s x {num_samples}"
    console.print(plan_view(plan, title))


@app.command("inspect-memory")
def inspect_memory_cmd(
    watch: bool = typer.Option(False, "--watch", help="Refresh every second until Ctrl-C."),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """What the machine has and uses now: GPUs, RAM, per-core CPU, torch threads, GPU processes, cache size."""
    import time

    from rich.live import Live

    from .cache import cache_root, folder_size
    from .memory_views import readout_view
    from .monitor import gpu_processes, snapshot

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


def main() -> None:
    """Console-script entry: user errors become one line and a non-zero exit, no traceback."""
    try:
        app()
    except MgenError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
