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



def machine_for(cache_dir, gpu_mem=None, ram=None, cores=None, no_gpu=False, device="auto"):
    """The probed machine with any simulated parts (--gpu-mem, --ram, --cores, --no-gpu, --device)."""
    from musicgen_cli.planning.hardware import parse_size, probe, simulate

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
    )




# -- Audio output, shared by `generate` and `batch`: audiocraft's audio_write defaults ------
FormatOpt = typer.Option(None, "--format", help="wav, flac, ogg or mp3 (default: the --out suffix, else wav).")
SubtypeOpt = typer.Option(None, "--subtype", help="Sample format: PCM_16 (default), PCM_24 or FLOAT (wav only).")
NormalizeOpt = typer.Option(
    "peak", "--normalize",
    help="peak (to -1 dBFS), loudness (to -14 LUFS, ITU-R BS.1770), rms, clip, or none "
    "(no scaling: samples past full scale are clipped by PCM, FLAC, Ogg and MP3; FLOAT keeps them).",
)
PeakHeadroomOpt = typer.Option(1.0, "--peak-headroom-db", help="dB below full scale for peak and clip.")
RmsHeadroomOpt = typer.Option(18.0, "--rms-headroom-db", help="Target RMS in dB below full scale for rms.")
LoudnessHeadroomOpt = typer.Option(14.0, "--loudness-headroom-db", help="Target loudness in dB below 0 LUFS for loudness.")
LoudnessCompressorOpt = typer.Option(False, "--loudness-compressor", help="Soft-clip (tanh) after loudness normalisation.")
Mp3BitrateOpt = typer.Option(320, "--mp3-bitrate", help="MP3 bit rate in kb/s (40-320, constant).")
FadeInOpt = typer.Option(0.0, "--fade-in", help="Seconds of raised-cosine fade-in.")
FadeOutOpt = typer.Option(0.0, "--fade-out", help="Seconds of raised-cosine fade-out.")


def audio_options(fmt, subtype, normalize, peak_db, rms_db, loudness_db, compressor, mp3_bitrate, fade_in, fade_out):
    """The audio options flags as one checked AudioOptions (before anything loads)."""
    from musicgen_cli.engine.audio import AudioOptions

    return AudioOptions(
        format=fmt, subtype=subtype, mp3_bitrate=mp3_bitrate, normalize=normalize, peak_headroom_db=peak_db,
        rms_headroom_db=rms_db, loudness_headroom_db=loudness_db, loudness_compressor=compressor,
        fade_in_s=fade_in, fade_out_s=fade_out,
    ).validate()
