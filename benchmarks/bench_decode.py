"""Decode speed: transformers' generate vs mgen's loop, side by side in one process.

    PYTHONPATH=. python benchmarks/bench_decode.py --shape small --frames 100
    PYTHONPATH=. python benchmarks/bench_decode.py --shape small --quantize int8 --threads 1
    PYTHONPATH=. python benchmarks/bench_decode.py --shape medium --device cuda --dtype float16
    PYTHONPATH=. python benchmarks/bench_decode.py --shape large --device cuda --gpu-budget-gib 8

On CUDA the fast loop is timed twice: eager ("fast") and with the step replayed from a CUDA
graph ("graphed"); with --gpu-budget-gib the layers past the budget sit in pinned host memory
and are streamed one layer ahead, and the copy bound (bytes streamed per step / measured pinned
bandwidth) is printed next to the measured step.

Random-weight models of the released shapes (testing.build_model). Prints, per engine: ms per
decode step (median of the steady state), steps/s, real-time factor (compute seconds per second
of audio), peak memory, the ratio to the reference, and the memory-bandwidth bound measured on
this machine. Also checks token identity (greedy and seeded sampling) between the engines.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicgen_cli.decode.types import Sampling, decode_steps  # noqa: E402
from musicgen_cli.decode.windows import generate_codes  # noqa: E402
from musicgen_cli.testing import ModelSpec, build_model, build_tokenizer  # noqa: E402

PROMPT = "jazz piano trio with drums"


@dataclass
class Run:
    name: str
    codes: torch.Tensor
    ms_per_step: float
    cpu_ms_per_step: float
    wall_s: float
    peak_gib: float


class PeakMemory:
    """Peak resident memory (CPU, sampled) or peak allocated memory (CUDA) over a block."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            import psutil

            process = psutil.Process()
            self.peak = process.memory_info().rss

            def watch():
                while not self._stop.wait(0.01):
                    self.peak = max(self.peak, process.memory_info().rss)

            self._thread = threading.Thread(target=watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()

    @property
    def gib(self) -> float:
        return self.peak / 2**30


def best_time(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def read_bandwidth(device: torch.device) -> float:
    """Bytes/s a reduction streams from memory: the ceiling for weight-bound decoding."""
    block = torch.ones(2**26 if device.type == "cpu" else 2**30, device=device)  # 256 MiB / 4 GiB
    return block.numel() * 4 / best_time(lambda: block.sum())


def pinned_h2d_bandwidth(device: torch.device) -> float:
    host = torch.ones(2**28, pin_memory=True)
    target = torch.empty_like(host, device=device)
    return host.numel() * 4 / best_time(lambda: target.copy_(host, non_blocking=True))


def bytes_per_step(model) -> int:
    """Weights every decode step reads: the decoder minus the cross-attention K/V projections
    (run once per window) and the embeddings (a few rows)."""
    total = 0
    for name, tensor in list(model.decoder.named_parameters()) + list(model.decoder.named_buffers()):
        if "encoder_attn.k_proj" in name or "encoder_attn.v_proj" in name or "embed" in name:
            continue
        total += tensor.numel() * tensor.element_size()
    return total


def timed(name, model, text, frames, sampling, engine, device, seed=0) -> Run:
    from musicgen_cli.decode.cudagraph import GraphedStep

    GraphedStep.enabled = name != "fast"  # "fast" times the eager step; "graphed" replays a graph
    stamps: list[float] = []
    cpu_stamps: list[float] = []

    def on_step(step, total):
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())

    torch.manual_seed(seed)
    with PeakMemory(device) as peak:
        start = time.perf_counter()
        codes = generate_codes(model, input_ids=text.input_ids, attention_mask=text.attention_mask,
                               num_frames=frames, sampling=sampling, engine=engine, on_step=on_step)
        wall = time.perf_counter() - start
    def per_step(marks):  # median over the steady state: the prefill step is skipped
        return 1000 * statistics.median(b - a for a, b in zip(marks[1:], marks[2:]))

    return Run(name, codes, per_step(stamps), per_step(cpu_stamps), wall, peak.gib)


def spectral_distance(model, a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of the two decoded clips' log-magnitude spectrograms (dB), each
    clip normalised to unit RMS first. A random-weight codec's codebooks are all zeros (every
    code sounds the same), so they get seeded random entries here first."""
    generator = torch.Generator().manual_seed(0)
    for name, buffer in model.audio_encoder.quantizer.named_buffers():
        if name.endswith("codebook.embed") and not buffer.any():
            buffer.copy_(torch.randn(buffer.shape, generator=generator))

    def spectrum(codes):
        with torch.inference_mode():
            channels = model.decoder.config.audio_channels
            audio = model.audio_encoder.decode(codes[None, :1, ::channels], [None]).audio_values[0, 0].float().cpu()
        audio = audio / audio.pow(2).mean().sqrt().clamp(min=1e-12)
        stft = torch.stft(audio, 1024, 256, window=torch.hann_window(1024), return_complex=True).abs()
        return 20 * torch.log10(stft + 1e-4)

    return float((spectrum(a) - spectrum(b)).abs().mean())


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text + f", load avg {os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="small", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--variant", default="mono", choices=["mono", "stereo", "melody"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                        help="default: float32 on CPU, float16 on CUDA")
    parser.add_argument("--frames", type=int, default=100, help="frames per timed run (50 = 1 s of audio)")
    parser.add_argument("--check-frames", type=int, default=10, help="frames of the greedy identity check")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quantize", choices=["int8"], help="also time the int8 loop (after the fp runs)")
    parser.add_argument("--int8-schemes", nargs="+", default=["weight-only", "dynamic"],
                        choices=["weight-only", "dynamic"], help="each runs on its own copy of the model")
    parser.add_argument("--no-reference", action="store_true", help="skip transformers' generate")
    parser.add_argument("--gpu-budget-gib", type=float, help="keep only this much decoder on the GPU")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("float32" if device.type == "cpu" else "float16"))
    print(f"machine: {machine(device)}")
    bandwidth = read_bandwidth(device)
    print(f"measured read bandwidth: {bandwidth / 1e9:.1f} GB/s ({device.type})")

    with torch.device(device):  # released shapes initialise in seconds on a GPU
        model = build_model(ModelSpec(shape=args.shape, variant=args.variant), dtype=dtype)
    offloaded = 0
    if args.gpu_budget_gib:
        from musicgen_cli.decode.offload import offload_layers

        offloaded = offload_layers(model, int(args.gpu_budget_gib * 2**30))
    folder = Path(tempfile.mkdtemp())
    build_tokenizer(folder)
    from transformers import AutoTokenizer

    text = AutoTokenizer.from_pretrained(folder)([PROMPT], return_tensors="pt")
    frame_rate = model.config.audio_encoder.frame_rate
    steps = decode_steps(model, args.frames)
    full_bytes = bytes_per_step(model)
    print(f"model: {args.shape} {args.variant} {dtype}, {args.frames} frames = {steps} steps, "
          f"{full_bytes / 2**20:.0f} MiB of weights read per step")

    engines = ["fast"] if args.no_reference else ["reference", "fast"]
    if not args.no_reference:
        greedy = {e: timed(e, model, text, args.check_frames, Sampling(do_sample=False), e, device).codes
                  for e in engines}
        print(f"greedy tokens identical ({args.check_frames} frames): "
              f"{torch.equal(greedy['reference'], greedy['fast'])}")
    runs = [timed(e, model, text, args.frames, Sampling(), e, device) for e in engines]
    if device.type == "cuda" and not offloaded:
        runs.append(timed("graphed", model, text, args.frames, Sampling(), "fast", device))
        same = torch.equal(runs[-1].codes, runs[-2].codes)
        print(f"graphed vs eager tokens identical (seed 0): {same}")
    if not args.no_reference:
        same = torch.equal(runs[0].codes, runs[1].codes)
        print(f"sampled tokens identical (seed 0, top-k 250, CFG 3): {same}")
    if args.quantize:
        from musicgen_cli.engine.quantize import quantize_int8

        fp = runs[-1]
        for scheme in args.int8_schemes:
            quantized = quantize_int8(copy.deepcopy(model), scheme)
            int8 = timed(f"fast int8 {scheme[:3]}", quantized, text, args.frames, Sampling(), "fast", device)
            runs.append(int8)
            other = timed("seed 1", quantized, text, args.frames, Sampling(), "fast", device, seed=1).codes
            agree = float((int8.codes == fp.codes).float().mean())
            print(f"int8 {scheme} vs {dtype}, same seed: {100 * agree:.1f}% of tokens equal; log-spectrum "
                  f"distance {spectral_distance(model, fp.codes, int8.codes):.2f} dB (two unrelated clips, "
                  f"seeds 0 and 1: {spectral_distance(model, int8.codes, other):.2f} dB)")
            del quantized
        if offloaded == 0:
            print(f"int8 bandwidth bound: {bandwidth * dtype.itemsize / full_bytes:.1f} steps/s")

    base = runs[0].ms_per_step if not args.no_reference else None
    limit = bandwidth / full_bytes
    print(f"\n{'engine':<14}{'ms/step':>9}{'steps/s':>9}{'RTF':>7}{'peak GiB':>10}{'vs ref':>8}{'wall s':>8}"
          f"{'cpu ms/step':>13}")
    for run in runs:
        rate = 1000 / run.ms_per_step
        ratio = f"{base / run.ms_per_step:.2f}x" if base else "-"
        print(f"{run.name:<14}{run.ms_per_step:>9.1f}{rate:>9.2f}{frame_rate / rate:>7.2f}{run.peak_gib:>10.2f}"
              f"{ratio:>8}{run.wall_s:>8.1f}{run.cpu_ms_per_step:>13.1f}")
    print("RTF = compute seconds per second of audio; peak = process RSS (CPU) or allocated (CUDA); "
          "cpu ms/step = process CPU time, robust to other load with --threads 1")
    print(f"bandwidth bound ({dtype} weights, {bandwidth / 1e9:.1f} GB/s): {limit:.1f} steps/s")
    if offloaded and device.type == "cuda":
        h2d = pinned_h2d_bandwidth(device)
        bound_ms = 1000 * offloaded / h2d
        print(f"offloaded {offloaded / 2**30:.2f} GiB, pinned H2D {h2d / 1e9:.1f} GB/s -> copy bound "
              f"{bound_ms:.1f} ms/step; fast loop {runs[-1].ms_per_step / bound_ms:.2f}x of it")
    print(f"load avg after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
