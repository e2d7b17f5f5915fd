"""Options and helpers shared by the commands: declared once, so every command spells them alike."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

from musicgen_cli.errors import MgenError
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.ui.panel import GenerationPanel

console = Console()
err_console = Console(stderr=True)

CacheDirOpt = typer.Option(None, "--cache-dir", help="Model cache root (default: model-cache/ beside manifest.json).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
GpuMemOpt = typer.Option(None, "--gpu-mem", help="Simulate a GPU of this size (repeat for several), e.g. 8GiB.")
GpuCapOpt = typer.Option(None, "--gpu-capability", help="Compute capability of the simulated GPUs, e.g. 7.5 (default 8.6).")
RamOpt = typer.Option(None, "--ram", help="Simulate this much RAM, e.g. 16GiB.")
CoresOpt = typer.Option(None, "--cores", help="Simulate this many CPU cores.")
NoGpuOpt = typer.Option(False, "--no-gpu", help="Plan and run as if there were no GPU.")
ReserveOpt = typer.Option(None, "--reserve", help="VRAM to leave free per GPU (default: 8 % of the card, at least 512MiB).")
MaxVramOpt = typer.Option(None, "--max-vram", help="Use at most this much VRAM per GPU.")
DeviceOpt = typer.Option("auto", "--device", help="auto (GPU when there is one), cpu, or cuda.")



@contextmanager
def reporter_for(silent: bool, title: str = "mgen generate") -> Iterator[Reporter]:
    """The live panel, or nothing for --quiet/--json."""
    if silent:
        yield NullReporter()
        return
    with GenerationPanel(err_console, title) as panel:
        yield panel



def machine_for(cache_dir, gpu_mem=None, ram=None, cores=None, no_gpu=False, device="auto", capability=None):
    """The probed machine with any simulated parts (--gpu-mem, --gpu-capability, --ram, --cores,
    --no-gpu, --device)."""
    from musicgen_cli.planning.hardware import (
        parse_capability,
        parse_size,
        probe,
        simulate,
    )

    sm = parse_capability(capability)
    if capability is not None and not gpu_mem:
        raise MgenError("--gpu-capability describes simulated GPUs", "add --gpu-mem, e.g. --gpu-mem 8GiB")

    if device not in ("auto", "cpu", "cuda"):
        raise MgenError(f"unknown device {device!r}", "use --device auto, cpu or cuda")
    machine = probe(cache_dir)
    if device == "cuda" and not machine.gpus and not gpu_mem:
        raise MgenError("--device cuda but torch sees no CUDA GPU", "install a CUDA build of torch, or use --device cpu")
    return simulate(
        machine,
        gpu_mem=[parse_size(s) for s in gpu_mem or []],
        ram=parse_size(ram) if ram else None,
        cores=cores,
        no_gpu=no_gpu or device == "cpu",
        capability=sm,
    )


