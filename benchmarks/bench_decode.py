"""Decode speed: transformers' generate vs mgen's loop, side by side in one process.

    PYTHONPATH=. python benchmarks/bench_decode.py --shape small --frames 100
    PYTHONPATH=. python benchmarks/bench_decode.py --shape small --frames 1500 --threads 1 --reference-frames 50 \
        --modes bfloat16 int8-weight-only int8-dynamic int4-weight-only
    PYTHONPATH=. python benchmarks/bench_decode.py --shape medium --device cuda --dtype float16
    PYTHONPATH=. python benchmarks/bench_decode.py --shape large --device cuda --gpu-budget-gib 8

On CUDA the fast loop is timed twice: eager ("fast") and with the step replayed from a CUDA
graph ("graphed"); with --gpu-budget-gib the layers past the budget sit in pinned host memory
and are streamed one layer ahead, and the copy bound (bytes streamed per step / measured pinned
bandwidth) is printed next to the measured step.

Random-weight models of the released shapes (testing.build_model). Prints, per engine: ms per
decode step (median of the steady state), steps/s, real-time factor (compute seconds per second
of audio), its bandwidth bound and the share of it reached, peak memory and the ratio to the
reference. The bound of each run is the read bandwidth measured just before it over the bytes
its median step reads: the decoder weights in that mode's format plus the KV cache at the
median position. Also checks token identity (greedy and seeded sampling) between the engines,
and gates each reduced-precision mode (`--modes`) against float32 at the same seed: share of
equal tokens and log-spectral distance of the decoded audio (planning/cpu_modes.py's gates).
"""

from __future__ import annotations

import argparse
import contextlib
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
FLOAT32_KV = False  # set while a mode runs the old path: its KV cache in float32


class float32_kv:
    """The previous CPU path for a comparison: every layer's KV cache in float32."""

    def __enter__(self):
        from musicgen_cli.decode import fastloop

        global FLOAT32_KV
        self.saved, FLOAT32_KV = dict(fastloop._ATTENTION_DTYPES), True
        for dtype in (torch.float32, torch.bfloat16):
            fastloop._ATTENTION_DTYPES[("cpu", dtype)] = torch.float32

    def __exit__(self, *exc):
        from musicgen_cli.decode import fastloop

        global FLOAT32_KV
        FLOAT32_KV = False
        fastloop._ATTENTION_DTYPES.clear()
        fastloop._ATTENTION_DTYPES.update(self.saved)


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


def best_time(fn, repeats: int = 5, pick=min) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return pick(times)


def read_bandwidth(device: torch.device) -> float:
    """Bytes/s a reduction streams from memory: the ceiling for weight-bound decoding. The median
    of 9 reads, as step times are medians: on a shared VM single reads range over 2x."""
    # 256 MiB / 4 GiB of distinct pages (a VM host merges identical ones, and ones would read from cache)
    block = torch.arange(2**26 if device.type == "cpu" else 2**30, dtype=torch.float32, device=device)
    return block.numel() * 4 / best_time(lambda: block.sum(), repeats=9, pick=statistics.median)


def pinned_h2d_bandwidth(device: torch.device) -> float:
    host = torch.arange(2**28, dtype=torch.float32).pin_memory()
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


def mode_model(model, mode: str):
    """A copy of `model` running the decoder in one CPU mode (float32 is the model itself)."""
    from musicgen_cli.engine.quantize import apply_kernel

    if mode == "float32":
        return model
    copied = copy.deepcopy(model)
    if mode == "bfloat16":
        copied.decoder.to(torch.bfloat16)
        if hasattr(copied, "enc_to_dec_proj"):
            copied.enc_to_dec_proj.to(torch.bfloat16)
        if hasattr(copied, "audio_enc_to_dec_proj"):
            copied.audio_enc_to_dec_proj.to(torch.bfloat16)
        return copied
    return apply_kernel(copied, mode)


def mode_bytes(model, mode: str, rows: int, positions: int) -> tuple[int, int]:
    """(weight bytes, KV-cache bytes) one decode step of the float32 `model` reads in `mode`
    with `positions` cached; the cache dtype is the one the fast loop picks for that mode."""
    from musicgen_cli.decode.fastloop import attention_dtype
    from musicgen_cli.planning.cpu_modes import linear_params, weight_bytes_per_param

    config = model.decoder.config
    linear = linear_params(model.config)
    other = bytes_per_step(model) // model.decoder.dtype.itemsize - linear  # layer norms, biases
    width = 2 if mode == "bfloat16" else model.decoder.dtype.itemsize
    weights = int(linear * weight_bytes_per_param(mode)) + other * width
    device = model.decoder.model.decoder.embed_tokens[0].weight.device
    kv_width = attention_dtype(device, torch.bfloat16 if mode == "bfloat16" else model.decoder.dtype,
                               reduced=mode != "float32" and not FLOAT32_KV).itemsize
    kv = config.num_hidden_layers * 2 * rows * positions * config.hidden_size * kv_width
    return weights, kv


def main() -> None:
    from musicgen_cli.planning.cpu_modes import (
        CPU_MODES,
        GATE_LSD_DB,
        GATE_TOKENS_EQUAL,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="small", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--variant", default="mono", choices=["mono", "stereo", "melody"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                        help="default: float32 on CPU, float16 on CUDA")
    parser.add_argument("--frames", type=int, default=100, help="frames per timed run (50 = 1 s of audio)")
    parser.add_argument("--check-frames", type=int, default=10, help="frames of the greedy identity check")
    parser.add_argument("--reference-frames", type=int, default=None,
                        help="frames of the timed reference run and the sampled identity check (default: --frames)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--modes", nargs="*", default=[], choices=[m for m in CPU_MODES if m != "float32"],
                        help="reduced-precision CPU modes to time and gate against float32 (each on its own copy)")
    parser.add_argument("--no-reference", action="store_true", help="skip transformers' generate")
    parser.add_argument("--float32-kv", nargs="*", default=[], choices=[m for m in CPU_MODES if m != "float32"],
                        help="also run these modes the old way, their KV cache in float32, for the comparison")
    parser.add_argument("--positions", nargs="+", type=int, default=[],
                        help="instead of whole clips: time single steps of fp32 and each mode with this many "
                             "positions already cached (e.g. 750 1500: the middle and end of a 30 s clip)")
    parser.add_argument("--kv-formats", action="store_true",
                        help="only time SDPA over a float32 and a bf16 cache (the shape's layers, 2 rows, 50 and "
                             "1500 positions, 5 repetitions), as the loop times them to choose the cache's format")
    parser.add_argument("--gpu-budget-gib", type=float, help="keep only this much decoder on the GPU")
    parser.add_argument("--require-identical", action="store_true",
                        help="exit 1 with a FAIL line where token identity is promised and missing: greedy tokens "
                             "in float32 on every engine, sampled tokens too off CUDA (CUDA draws without a host sync)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("float32" if device.type == "cpu" else "bfloat16"))
    print(f"machine: {machine(device)}")
    print(f"cpu flags: {cpu_flags()}")
    if args.kv_formats:
        kv_formats(args.shape)
        return
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

    if args.positions:
        positional(model, text, args.modes, args.positions, device, args.float32_kv)
        return
    runs: list[Run] = []
    broken: list[str] = []
    if not args.no_reference:
        greedy = {e: timed(e, model, text, args.check_frames, Sampling(do_sample=False), e, device).codes
                  for e in ("reference", "fast")}
        print(f"greedy tokens identical ({args.check_frames} frames): "
              f"{torch.equal(greedy['reference'], greedy['fast'])}")
        if dtype == torch.float32 and not torch.equal(greedy["reference"], greedy["fast"]):
            broken.append(f"float32 greedy tokens differ between the reference and fast engines ({args.check_frames} frames)")
        ref_frames = args.reference_frames or args.frames
        ref = timed("reference", model, text, ref_frames, Sampling(), "reference", device)
        same = ref.codes
        if ref_frames != args.frames:
            same = timed("fast", model, text, ref_frames, Sampling(), "fast", device).codes
            print(f"(reference timed over {ref_frames} frames, the rest over {args.frames})")
        print(f"sampled tokens identical ({ref_frames} frames, seed 0, top-k 250, CFG 3): "
              f"{torch.equal(ref.codes, same)}")
        if dtype == torch.float32 and device.type != "cuda" and not torch.equal(ref.codes, same):
            broken.append(f"float32 sampled tokens differ between the reference and fast engines ({ref_frames} frames)")
        runs.append(ref)
    # Every engine run is preceded by its own bandwidth measurement: on a shared machine the
    # bound moves with the load, so each share is taken against the bandwidth of its moment.
    rows = 2  # one clip with CFG
    positions = 1 + steps // 2  # the median step reads about half the final cache
    bounds: dict[str, tuple[float, float, int]] = {}
    fast = timed("fast", model, text, args.frames, Sampling(), "fast", device)
    base_mode = "float32" if dtype.itemsize == 4 else "bfloat16"  # fp16 on GPUs reads what bf16 reads
    bounds["fast"] = (bandwidth, sum(mode_bytes(model, base_mode, rows, positions)))
    runs.append(fast)
    if device.type == "cuda" and not offloaded:
        graphed = timed("graphed", model, text, args.frames, Sampling(), "fast", device)
        print(f"graphed vs eager tokens identical (seed 0): {torch.equal(graphed.codes, fast.codes)}")
        runs.append(graphed)
    gates = []
    other = None
    for mode in args.modes:
        reduced = mode_model(model, mode)
        bw = read_bandwidth(device)
        run = timed(f"fast {CPU_MODES[mode].short}", reduced, text, args.frames, Sampling(), "fast", device)
        bounds[run.name] = (bw, sum(mode_bytes(model, mode, rows, positions)))
        runs.append(run)
        if other is None:  # what "unrelated" looks like: another seed of the first reduced mode
            other = timed("seed 1", reduced, text, args.frames, Sampling(), "fast", device, seed=1).codes
        agree = 100 * float((run.codes == fast.codes).float().mean())
        distance = spectral_distance(model, fast.codes, run.codes)
        gates.append((mode, agree, distance))
        if mode in args.float32_kv:
            with float32_kv():
                bw = read_bandwidth(device)
                old = timed(f"{run.name} f32 KV", reduced, text, args.frames, Sampling(), "fast", device)
                bounds[old.name] = (bw, sum(mode_bytes(model, mode, rows, positions)))
            runs.append(old)
        del reduced
    if gates:
        unrelated = spectral_distance(model, fast.codes, other)
        print(f"\nquality vs float32 at the same seed (gate: >= {GATE_TOKENS_EQUAL:.0f}% tokens equal and "
              f"<= {GATE_LSD_DB:.1f} dB; two unrelated clips, seeds 0 and 1: {unrelated:.2f} dB)")
        for mode, agree, distance in gates:
            passed = agree >= GATE_TOKENS_EQUAL and distance <= GATE_LSD_DB
            print(f"  {mode:<18} {agree:5.1f}% tokens equal  {distance:5.2f} dB  {'pass' if passed else 'FAIL'}")

    base = runs[0].ms_per_step if not args.no_reference else None
    print(f"\n{'engine':<16}{'ms/step':>9}{'steps/s':>9}{'RTF':>7}{'bound/s':>9}{'share':>7}{'peak GiB':>10}"
          f"{'vs ref':>8}{'wall s':>8}{'cpu ms/step':>13}")
    for run in runs:
        rate = 1000 / run.ms_per_step
        ratio = f"{base / run.ms_per_step:.2f}x" if base else "-"
        bw, nbytes = bounds.get(run.name, bounds.get("fast"))
        bound = bw / nbytes
        print(f"{run.name:<16}{run.ms_per_step:>9.1f}{rate:>9.2f}{frame_rate / rate:>7.2f}{bound:>9.1f}"
              f"{100 * rate / bound:>6.0f}%{run.peak_gib:>10.2f}{ratio:>8}{run.wall_s:>8.1f}{run.cpu_ms_per_step:>13.1f}")
    print("RTF = compute seconds per second of audio; bound = measured bandwidth / (weights + KV bytes of the "
          f"median step, {positions} cached positions x {rows} rows); peak = process RSS (CPU) or allocated (CUDA); "
          "cpu ms/step = process CPU time")
    fastest = min(run.ms_per_step for run in runs)
    sample_ms = 1000 * sampler_seconds(model, rows, device)
    print(f"sampling (CFG, top-k 250, {model.decoder.config.num_codebooks} codebooks x "
          f"{model.decoder.config.vocab_size}): {sample_ms:.2f} ms/step, {100 * sample_ms / fastest:.1f}% of the "
          f"fastest step")
    if offloaded and device.type == "cuda":
        h2d = pinned_h2d_bandwidth(device)
        bound_ms = 1000 * offloaded / h2d
        print(f"offloaded {offloaded / 2**30:.2f} GiB, pinned H2D {h2d / 1e9:.1f} GB/s -> copy bound "
              f"{bound_ms:.1f} ms/step; fast loop {runs[-1].ms_per_step / bound_ms:.2f}x of it")
    print(f"load avg after: {os.getloadavg()[0]:.1f}")
    print("FIGURE " + ", ".join(f"{run.name} {1000 / run.ms_per_step:.1f} steps/s" for run in runs)
          + (f", greedy identical: {torch.equal(greedy['reference'], greedy['fast'])}" if not args.no_reference else ""))
    for problem in broken:
        print(f"FAIL: {problem}")
    if broken and args.require_identical:
        sys.exit(1)


@torch.inference_mode()
def step_at(model, text, position: int, device: torch.device, steps: int = 9) -> tuple[float, dict[str, float]]:
    """Median seconds of one CFG decode step (sampling included) with `position` keys and values
    already cached (random ones: the cost of a step does not depend on their values), and its
    split: the step's GEMMs, its attention calls and its sampling, each timed alone on the
    same decoder, and the glue (norms, residuals, reshapes, Python), the rest."""
    from musicgen_cli.decode import sampler
    from musicgen_cli.decode.fastloop import Decoder, condition
    from musicgen_cli.decode.types import WindowRequest

    request = WindowRequest(text.input_ids, text.attention_mask, 1, Sampling(), None, None)
    decoder = Decoder(model, 2, position + steps + 1, condition(model, request, device))
    for keys, values in decoder.cache:
        keys.normal_()
        values.normal_()
    decoder.pos = position
    codes = torch.zeros(2, model.decoder.config.num_codebooks, 1, dtype=torch.long, device=device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logits = decoder(codes)
        sampler.next_tokens(logits, Sampling())
        times.append(time.perf_counter() - start)
        decoder.pos = position
    step = statistics.median(times[1:])
    hidden = model.decoder.config.hidden_size
    x = torch.randn(2, 1, hidden, device=device, dtype=decoder.dtype)
    wide = torch.randn(2, 1, model.decoder.config.ffn_dim, device=device, dtype=decoder.dtype)

    def gemms():
        for ops in decoder.ops:
            for name in ("q", "k", "v", "out", "cross_q", "cross_out", "fc1"):
                if hasattr(ops, name):
                    getattr(ops, name)(x)
            ops.fc2(wide)
        for head in decoder.lm_heads:
            head(x)

    def attention():
        q = decoder._split(x)
        for i, (keys, values) in enumerate(decoder.cache):
            torch.nn.functional.scaled_dot_product_attention(q.to(keys.dtype), keys[:, :, : position + 1], values[:, :, : position + 1],
                                                            scale=decoder.scaling).to(x.dtype)
            if decoder.cross:
                k, v, mask = decoder.cross[i]
                torch.nn.functional.scaled_dot_product_attention(decoder._split(x), k, v, attn_mask=mask)

    split = {"gemm": best_time(gemms, pick=statistics.median), "attention": best_time(attention, pick=statistics.median),
             "sampling": best_time(lambda: sampler.next_tokens(logits, Sampling()), pick=statistics.median)}
    split["glue"] = max(0.0, step - sum(split.values()))
    return step, split


def positional(model, text, modes: list[str], positions: list[int], device: torch.device, old_kv: list[str]) -> None:
    """Single-step cost at long positions, per mode, against each one's bound there."""
    from musicgen_cli.planning.cpu_modes import CPU_MODES

    print(f"\n{'mode':<24}{'cached':>7}{'ms/step':>9}{'steps/s':>9}{'GB/s':>7}{'weights MiB':>13}{'KV MiB':>8}"
          f"{'bound/s':>9}{'share':>7}  split ms: gemm / attention / sampling / glue")
    runs = [(mode, False) for mode in ["float32", *modes]] + [(mode, True) for mode in old_kv]
    for mode, old in runs:
        reduced = mode_model(model, mode)
        with float32_kv() if old else contextlib.nullcontext():
            for position in positions:
                bw = read_bandwidth(device)
                seconds, split = step_at(reduced, text, position, device)
                weights, kv = mode_bytes(model, mode, 2, position)
                bound = bw / (weights + kv)
                name = CPU_MODES[mode].short + (" f32 KV" if old else "")
                parts = " / ".join(f"{1000 * split[k]:.1f}" for k in ("gemm", "attention", "sampling", "glue"))
                print(f"{name:<24}{position:>7}{1000 * seconds:>9.1f}{1 / seconds:>9.2f}{bw / 1e9:>7.1f}"
                      f"{weights / 2**20:>13.0f}{kv / 2**20:>8.0f}{bound:>9.1f}{100 / seconds / bound:>6.0f}%  {parts}")
        del reduced
    print("bound = read bandwidth measured just before each row / (weight bytes in the mode's format + KV "
          "bytes at that position in the cache's format, 2 rows); reduced modes keep the cache in bf16 where "
          "it attends faster, 'f32 KV' rows the old float32 cache. Split: GEMMs, attention and sampling "
          "timed alone on the same decoder; glue = the step minus the three")


def kv_formats(shape: str) -> None:
    """SDPA over each cache format, one float32 query column, medians of 5 repetitions."""
    from musicgen_cli.arch import SHAPES
    from musicgen_cli.decode.fastloop import attention_seconds

    hidden, layers, heads, _ = SHAPES[shape]
    print(f"load avg before: {os.getloadavg()[0]:.1f}; {layers} layers x {heads} heads, 2 rows, {torch.get_num_threads()} threads")
    for positions in (50, 1500):
        f32, bf16 = [], []
        for _ in range(5):  # interleaved: load hits both alike
            f32.append(attention_seconds(torch.float32, 2, heads, positions, layers))
            bf16.append(attention_seconds(torch.bfloat16, 2, heads, positions, layers))
        ratios = [a / b for a, b in zip(f32, bf16)]
        print(f"{positions:>5} positions: float32 {1e3 * statistics.median(f32):.1f} ms, bf16 {1e3 * statistics.median(bf16):.1f} ms, "
              f"float32/bf16 median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    print(f"load avg after: {os.getloadavg()[0]:.1f}")


def sampler_seconds(model, rows: int, device: torch.device) -> float:
    """Median time of one step's token choice (guidance, top-k, draw) on random logits."""
    from musicgen_cli.decode import sampler

    config = model.decoder.config
    logits = torch.randn(rows * config.num_codebooks, config.vocab_size, device=device)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        sampler.next_tokens(logits, Sampling())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_flags() -> str:
    from musicgen_cli.planning.cpu_modes import cpu_features

    return " ".join(cpu_features()) or "unknown"


if __name__ == "__main__":
    main()
