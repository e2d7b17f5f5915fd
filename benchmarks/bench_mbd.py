"""MultiBand Diffusion against EnCodec's decoder, side by side in one run.

    python benchmarks/bench_mbd.py --layout released --seconds 1 --passes 2 --threads 2
    python benchmarks/bench_mbd.py --layout tiny --seconds 4

Random weights in the released layout (4 bands, 48 -> 3072 channels, 20 steps a band) or the
set-up check's tiny one; EnCodec is musicgen-small's 32 kHz codec shape, also random. Timings
are the best of `--repeat` calls: one whole EnCodec decode, one U-Net pass of every band
(`--passes` passes each, scaled to the chain's 20), and the 32-band equalisation. MBD per
second of audio = (U-Net passes + equalisation) / seconds. Memory: the anonymous RSS peaks over
the passes and over the equalisation, each beside the planner's figure (planning/diffusion.py:
live bytes, and what a CPU plan holds with the heap's slack), and the heap the load adds (about
nothing: the U-Nets use the memory-mapped file's tensors); the planner's CPU time estimate for
--threads cores beside the measured one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import PeakSampler

from musicgen_cli.engine import mbd
from musicgen_cli.planning import estimates as K
from musicgen_cli.planning.diffusion import diffusion_sizes
from musicgen_cli.planning.monitor import anon_rss_bytes


def best(fn, repeat: int) -> tuple[float, float]:
    """(wall, process CPU) seconds of the fastest of `repeat` calls: on a shared machine the CPU
    time is the stable figure, the wall time what a user waits."""
    times = []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=("released", "tiny"), default="released")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--passes", type=int, default=1, help="U-Net passes timed per band (the chain has 20)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from transformers import EncodecModel

    from musicgen_cli.arch import build_config

    codec_cfg = build_config("small" if args.layout == "released" else "tiny", "mono").audio_encoder
    codec = EncodecModel(codec_cfg).eval()
    frames = round(args.seconds * 50)
    samples = frames * 640
    codes = torch.randint(0, codec_cfg.codebook_size, (1, 4, frames))

    unet = None if args.layout == "released" else mbd.TINY_UNET
    with tempfile.TemporaryDirectory() as tmp:
        path = mbd.write_checkpoint(Path(tmp) / mbd.CHECKPOINT_NAME, mbd.band_configs(unet=unet))
        size = path.stat().st_size
        before = anon_rss_bytes()
        checkpoint = mbd.load_checkpoint(path)
        load_heap = anon_rss_bytes() - before
    params = sum(p.numel() for b in checkpoint.bands for p in b.unet.parameters())

    with torch.inference_mode():
        reference = codec.decode(codes[None], [None]).audio_values
        encodec_s = best(lambda: codec.decode(codes[None], [None]).audio_values, args.repeat)
        condition = mbd.latent(codec, codes)
        x = torch.randn(1, 1, samples)

        def passes() -> None:
            for band in checkpoint.bands:
                for step in band.schedule.steps[: args.passes]:
                    band.unet(x, step, condition=condition)

        base = anon_rss_bytes()
        with PeakSampler() as peak:
            unet_s = [t / args.passes for t in best(passes, args.repeat)]
        base_eq = anon_rss_bytes()
        with PeakSampler() as eq_peak:
            eq_s = best(lambda: mbd.equalise(x, reference, 32000), args.repeat)
    chain = len(checkpoint.bands[0].schedule.steps) - 1
    report = {"layout": args.layout, "seconds": args.seconds, "threads": args.threads, "params": params,
              "checkpoint_bytes": size, "load_heap_bytes": load_heap}
    for index, clock in enumerate(("wall", "cpu")):
        mbd_s = unet_s[index] * chain + eq_s[index]
        report.update({
            f"encodec_decode_{clock}_s_per_audio_s": encodec_s[index] / args.seconds,
            f"unet_pass_all_bands_{clock}_s_per_audio_s": unet_s[index] / args.seconds,
            f"equalise_{clock}_s_per_audio_s": eq_s[index] / args.seconds,
            f"mbd_{clock}_s_per_audio_s": mbd_s / args.seconds,
            f"mbd_over_encodec_{clock}": mbd_s / encodec_s[index],
        })
    planned = diffusion_sizes(int(codec_cfg.hidden_size))
    one = planned.pass_seconds(args.seconds, K.CPU_CONV_FLOPS_PER_CORE * args.threads, K.CPU_OP_OVERHEAD_S)
    report.update({
        "planned_weight_bytes": planned.weight_bytes,
        "pass_peak_rss_over_weights_bytes": max(0, peak.peak - base),
        "equalise_peak_rss_bytes": max(0, eq_peak.peak - base_eq),
        "planned_live_bytes": planned.live_bytes(args.seconds, cpu=True),
        "planned_cpu_decode_bytes": planned.decode_bytes(args.seconds, cpu=True),
        "planned_cpu_s_per_audio_s": planned.passes * one / args.seconds,
        "load_average": os.getloadavg(),
    })
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
