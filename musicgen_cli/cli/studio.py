"""`mgen studio`: plan and load once, then take after take from prompts typed (or piped) in."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from musicgen_cli.cli.options import (
    CacheDirOpt,
    CoresOpt,
    DeviceOpt,
    GpuMemOpt,
    MaxVramOpt,
    NoGpuOpt,
    RamOpt,
    ReserveOpt,
    console,
    err_console,
    machine_for,
)
from musicgen_cli.errors import Interrupted, MgenError

# Sampling options default to None: an unset one keeps GenerateSettings' default (defined once there).
_SET = "(default: as mgen generate)"


def studio_cmd(
    size: Optional[str] = typer.Option(None, "--size", help="Model size: small, medium, large (or any manifest key)."),
    model_key: Optional[str] = typer.Option(None, "--model-key", "-m", help="Manifest key, repo id, or model folder. See `mgen models`."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", "-o", help="Folder for the takes (default: studio/<date-time>/)."),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", help=f"Seconds of audio per take {_SET}."),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", "-n", help=f"Clips per take {_SET}."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Fixed seed for every take (default: a new random seed each take)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help=f"Sampling temperature {_SET}."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help=f"Sample among the k most likely codes {_SET}."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help=f"Nucleus sampling threshold; 0 turns it off {_SET}."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help=f"Classifier-free guidance scale {_SET}."),
    fmt: str = typer.Option("wav", "--format", help="wav, flac or ogg."),
    subtype: Optional[str] = typer.Option(None, "--subtype", help="Sample format, e.g. PCM_16 (default), PCM_24, FLOAT."),
    normalize: str = typer.Option("peak", "--normalize", help="peak, loudness or none (never clips)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: weight-only int8 decoder (faster on CPU)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: planned for the device)."),
    device: str = DeviceOpt,
    gpu_mem: Optional[list[str]] = GpuMemOpt,
    ram: Optional[str] = RamOpt,
    cores: Optional[int] = CoresOpt,
    no_gpu: bool = NoGpuOpt,
    reserve: Optional[str] = ReserveOpt,
    max_vram: Optional[str] = MaxVramOpt,
    num_threads: Optional[int] = typer.Option(None, "--num-threads", help="CPU threads for torch (intra- and inter-op)."),
    cpu_util_target: Optional[float] = typer.Option(None, "--cpu-util-target", help="Fraction of logical cores to use, e.g. 0.8."),
    offline: bool = typer.Option(False, "--offline", help="Never download; fail with the command that would."),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """An interactive session: the model stays loaded, each line you type is a take.

    Type a prompt to generate a take (written to DIR/take-NNN-<slug>.wav with its sidecar), or a
    command: /duration S, /seed N|random, /again, /extend [S], /model KEY, /takes, /play [N],
    /keep N NAME, /help, /quit (or Ctrl-D). Ctrl-C stops the take in progress.

    Examples:

      mgen studio --size small --duration 8

      mgen studio --model-key tiny-random < session.txt
    """
    from musicgen_cli.engine.musicgen import GenerateSettings
    from musicgen_cli.jobs.studio import Studio, StudioOptions
    from musicgen_cli.planning.hardware import configure_threads, parse_size
    from musicgen_cli.store.cache import studio_history_path
    from musicgen_cli.ui.studio import StudioScreen, run_session

    if size and model_key:
        raise MgenError("give --size or --model-key, not both", "drop one of them")
    if quantize not in (None, "none", "int8"):
        raise MgenError(f"unknown quantisation {quantize!r}", "use --quantize int8")
    given = {"duration": duration, "num_samples": num_samples, "seed": seed, "temperature": temperature,
             "top_k": top_k, "top_p": top_p, "guidance": guidance}
    settings = replace(GenerateSettings(), **{k: v for k, v in given.items() if v is not None})
    threads = configure_threads(num_threads, cpu_util_target)
    options = StudioOptions(
        model=size or model_key or "small",
        out_dir=out_dir or Path("studio") / time.strftime("%Y-%m-%d-%H%M%S"),
        fmt=fmt.lower(),
        subtype=subtype,
        normalize=normalize.lower(),
        cache_dir=cache_dir,
        machine=machine_for(cache_dir, gpu_mem, ram, cores, no_gpu, device),
        dtype=dtype,
        quantize=None if quantize == "none" else quantize,
        reserve_bytes=parse_size(reserve) if reserve else None,
        max_vram_bytes=parse_size(max_vram) if max_vram else None,
        download=not offline,
        extra={"torch_threads": threads},
    )
    screen = StudioScreen(console, err_console)
    studio = Studio(options, settings, working=screen.working)  # checks every setting before loading
    try:
        mg = studio.start()
    except KeyboardInterrupt:
        raise Interrupted("stopped while loading the model", "run mgen studio again") from None
    console.print(
        f"studio: {studio.model_key} loaded ({mg.channels} channel(s), {mg.sample_rate} Hz); takes go to "
        f"{options.out_dir}/. Type a prompt, /help for commands, /quit or Ctrl-D to end.",
        highlight=False, soft_wrap=True,
    )
    try:
        made = run_session(studio, screen, studio_history_path())
    except KeyboardInterrupt:  # Ctrl-C while reading piped lines
        made = len(studio.takes)
    console.print(f"studio: {made} take(s) in {options.out_dir}", highlight=False, soft_wrap=True)
