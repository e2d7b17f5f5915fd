"""Items per minute: a local `mgen batch` against `--ray` with 1 and 2 workers, same file, one run.

    PYTHONPATH=. python benchmarks/bench_ray.py                       # 16 tiny items x 1 s
    PYTHONPATH=. python benchmarks/bench_ray.py --shape small --items 8 --seconds 2

A Ray instance of --cpus CPUs is started here (loopback, a temporary folder) before the timed
runs; its start-up is printed apart. Each Ray run starts its workers, which plan and load the
model and generate; this process writes every file, as `mgen batch --ray` does. The local
batch runs with as many torch threads as the Ray instance has CPUs; 1 worker gets them all,
2 workers half each. --max-batch 1 (the default) makes every item a pass of its own, the worst
case for the per-pass cost of the Ray path: the time to the first item (workers start, plan and load)
and the seconds per item after it are printed apart.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import ray
import torch

from musicgen_cli.engine.musicgen import GenerateSettings, load_model
from musicgen_cli.jobs.batch import BatchOptions, run_batch
from musicgen_cli.jobs.batchfile import Defaults, read_items
from musicgen_cli.jobs.batchlog import read_jsonl
from musicgen_cli.jobs.ray_batch import Cluster, run_ray_batch
from musicgen_cli.planning.hardware import probe, simulate
from musicgen_cli.testing import ModelSpec, write_model_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="tiny", help="tiny or small (random weights in the real layout)")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--max-batch", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray instance, and torch threads of the local batch")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mgen-bench-ray"))
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    folder = args.work / f"model-{args.shape}"
    if not (folder / "model.safetensors").exists():
        write_model_folder(folder, ModelSpec(shape=args.shape))
    src = args.work / "prompts.txt"
    src.write_text("".join(f"clip {i}: lofi beat with piano and soft drums\n" for i in range(args.items)))
    defaults = Defaults(str(folder), GenerateSettings(duration=args.seconds), base_seed=0)
    torch.set_num_threads(args.cpus)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only
    load_model(folder, machine=simulate(probe(), no_gpu=True))  # warm-up: imports and the page cache

    temp = Path(tempfile.mkdtemp(prefix="mgen-ray-"))
    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, _temp_dir=str(temp), _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    start_up = time.perf_counter() - started

    def timed(name: str, run) -> tuple[str, tuple[float, float, float]]:
        """Wall time, time to the first item written, and seconds per item after it."""
        out = args.work / f"out-{name.replace(' ', '-')}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.time()
        summary = run(read_items(src, defaults, out), out)
        wall = time.time() - t0
        assert summary.done == args.items, summary.failures
        finished = sorted(r["finished_at"] for r in read_jsonl(summary.manifest))
        return name, (wall, finished[0] - t0, (finished[-1] - finished[0]) / max(1, len(finished) - 1))

    options = BatchOptions(max_batch=args.max_batch, cpu=True)
    try:
        runs = dict([
            timed("local batch", lambda items, out: run_batch(items, out, BatchOptions(max_batch=args.max_batch, cpu=True, machine=simulate(probe(), no_gpu=True)))),
            timed("ray 1 worker", lambda items, out: run_ray_batch(items, out, options, Cluster(workers=1))),
            timed("ray 2 workers", lambda items, out: run_ray_batch(items, out, options, Cluster(workers=2))),
        ])
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)

    load = os.getloadavg()
    print(f"{args.items} items x {args.seconds:g} s, {args.shape}, --max-batch {args.max_batch}, {args.cpus} CPUs; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; Ray start-up {start_up:.1f} s (not in the runs)")
    print(f"{'run':14} {'seconds':>8} {'items/min':>10} {'vs local':>9} {'first item':>11} {'s/item after':>13}")
    local = runs["local batch"][0]
    for name, (spent, first, each) in runs.items():
        print(f"{name:14} {spent:8.1f} {60 * args.items / spent:10.1f} {local / spent:8.2f}x {first:10.1f}s {each:12.2f}s")
    per_item = runs["ray 1 worker"][2] - runs["local batch"][2]
    print(f"Ray path, 1 worker against local: {runs['ray 1 worker'][1] - runs['local batch'][1]:+.1f} s before the first item "
          f"(workers start, plan, load), {per_item:+.2f} s per item after it")

if __name__ == "__main__":
    main()
