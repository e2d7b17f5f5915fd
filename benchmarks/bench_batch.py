"""Clips per minute: sequential `generate` calls vs `mgen batch` (run_batch) without and with batching.

    PYTHONPATH=. python benchmarks/bench_batch.py                 # tiny and small-shaped
    PYTHONPATH=. python benchmarks/bench_batch.py --shapes tiny --clips 8 --seconds 2

Random-weight models in the real layouts (testing.write_model_folder): the tiny test model and
a small-shaped one (~2.4 GB fp32, written once under --work). Every figure is the wall time of
the whole job in one process: planning and loading the model once, generating, writing each
WAV + sidecar. One untimed load first warms imports and the page cache for all runs alike.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from musicgen_cli.engine.musicgen import GenerateSettings, load_model
from musicgen_cli.jobs.batch import BatchOptions, run_batch
from musicgen_cli.jobs.batchfile import Defaults, read_items
from musicgen_cli.jobs.request import Request
from musicgen_cli.jobs.run import run
from musicgen_cli.planning.hardware import probe, simulate
from musicgen_cli.testing import ModelSpec, write_model_folder


def model(work: Path, shape: str) -> Path:
    folder = work / f"model-{shape}"
    if not (folder / "model.safetensors").exists():
        write_model_folder(folder, ModelSpec(shape=shape))
    return folder


def sequential(folder: Path, prompts: list[str], seconds: float, out: Path, machine) -> float:
    """What a script would do: load once, then one generate call and one write per clip."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    mg = load_model(folder, machine=machine)
    for i, prompt in enumerate(prompts):
        run(Request(prompts=(prompt,), settings=GenerateSettings(duration=seconds, seed=i), paths=(out / f"{i:04d}.wav",)), mg)
    return time.perf_counter() - start


def batched(folder: Path, src: Path, out: Path, seconds: float, max_batch: int, machine) -> float:
    shutil.rmtree(out, ignore_errors=True)
    items = read_items(src, Defaults(str(folder), GenerateSettings(duration=seconds), base_seed=0), out)
    start = time.perf_counter()
    summary = run_batch(items, out, BatchOptions(max_batch=max_batch, machine=machine))
    assert summary.done == len(items), summary.failures
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,small")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mgen-bench-batch"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    machine = simulate(probe(), no_gpu=True)
    args.work.mkdir(parents=True, exist_ok=True)
    prompts = [f"clip {i}: lofi beat with piano and soft drums" for i in range(args.clips)]
    src = args.work / "prompts.txt"
    src.write_text("\n".join(prompts) + "\n")
    print(f"{args.clips} clips x {args.seconds:g} s, CPU, {machine.logical_cores} logical cores, {torch.get_num_threads()} torch threads")
    print(f"{'shape':6} {'run':28} {'seconds':>8} {'clips/min':>10} {'vs sequential':>14}")
    for shape in args.shapes.split(","):
        folder = model(args.work, shape)
        load_model(folder, machine=machine)  # warm-up: imports and the page cache, for every run alike
        runs = {
            "sequential generate calls": sequential(folder, prompts, args.seconds, args.work / "out-seq", machine),
            "batch --max-batch 1": batched(folder, src, args.work / "out-1", args.seconds, 1, machine),
            f"batch --max-batch {args.clips}": batched(folder, src, args.work / "out-n", args.seconds, args.clips, machine),
        }
        base = runs["sequential generate calls"]
        for name, spent in runs.items():
            print(f"{shape:6} {name:28} {spent:8.1f} {60 * args.clips / spent:10.1f} {base / spent:13.2f}x", flush=True)


if __name__ == "__main__":
    main()
