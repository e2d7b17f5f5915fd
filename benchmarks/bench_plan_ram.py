"""Planner's predicted peak RAM vs the measured peak RSS of a real CPU run.

For each shape, a fresh child process plans the job for this machine with no GPU, loads the
random-weight model with mgen's loader, generates the clip with transformers' generate
(text encoding, the decode loop, EnCodec) and reports its own peak resident memory: anonymous
RSS sampled every 5 ms plus the resident pages of the memory-mapped weight files, with the
whole peak RSS (ru_maxrss) beside it. Shared libraries' file-backed pages are left out of the
comparison: they are reclaimable and swing by ~60-110 MiB with the page cache (a fresh venv's
libraries are fully cached), which no plan can know. Target: within +-15 %.

    PYTHONPATH=. python benchmarks/bench_plan_ram.py --shape tiny --shape small --duration 2
    PYTHONPATH=. python benchmarks/bench_plan_ram.py --shape small --folder /path/to/small-model
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(folder: str, duration: float) -> dict:
    """Runs inside the measured process."""
    import torch
    from _measure import PeakSampler, mapped_weights_bytes
    from transformers import AutoConfig

    from musicgen_cli.engine.loader import load_by_plan
    from musicgen_cli.planning.hardware import probe, simulate
    from musicgen_cli.planning.job import Job
    from musicgen_cli.planning.monitor import peak_rss_bytes
    from musicgen_cli.planning.planner import plan_memory

    config = AutoConfig.from_pretrained(folder)
    plan = plan_memory(config, Job(duration), simulate(probe(), no_gpu=True))
    with PeakSampler() as sampler:
        loaded = load_by_plan(Path(folder), plan)
        inputs = loaded.tokenizer(["jazz trio with grand piano"], return_tensors="pt")
        torch.manual_seed(0)
        with torch.inference_mode():
            audio = loaded.model.generate(
                **inputs, max_new_tokens=plan.estimates.decode_steps, do_sample=True, guidance_scale=3.0
            )
    return {
        "predicted_peak_ram_bytes": plan.estimates.peak_ram_bytes,
        # Every weight is read while generating, so the mapped weights stay resident to the end.
        "measured_peak_bytes": sampler.peak + mapped_weights_bytes(),
        "measured_peak_anon_bytes": sampler.peak,
        "measured_peak_rss_bytes": peak_rss_bytes(),
        "audio_samples": int(audio.shape[-1]),
        "load_seconds": loaded.load_seconds,
    }


def measure(folder: Path, duration: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, __file__, "--child", str(folder), "--duration", str(duration)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["ratio"] = result["predicted_peak_ram_bytes"] / result["measured_peak_bytes"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=["tiny", "small"], help="repeatable (default: tiny)")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of audio to generate")
    parser.add_argument("--folder", type=Path, help="an existing model folder for the (single) shape")
    parser.add_argument("--json", action="store_true", help="print one JSON object per shape")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.duration)))
        return

    from musicgen_cli.testing import ModelSpec, write_model_folder

    shapes = args.shape or ["tiny"]
    with tempfile.TemporaryDirectory(prefix="mgen-bench-") as tmp:
        for shape in shapes:
            folder = args.folder or write_model_folder(Path(tmp) / shape, ModelSpec(shape))
            result = {"shape": shape, "duration_s": args.duration, **measure(folder, args.duration)}
            if args.json:
                print(json.dumps(result))
                continue
            print(
                f"{shape:>6}: predicted {result['predicted_peak_ram_bytes'] / 2**20:8.0f} MiB   "
                f"measured {result['measured_peak_bytes'] / 2**20:8.0f} MiB "
                f"(anonymous {result['measured_peak_anon_bytes'] / 2**20:.0f} + mapped weights; "
                f"{result['measured_peak_rss_bytes'] / 2**20:.0f} MiB with library pages)   "
                f"predicted/measured {result['ratio']:.3f}   ({'OK' if abs(result['ratio'] - 1) <= 0.15 else 'OFF'} at +-15 %)"
            )


if __name__ == "__main__":
    main()
