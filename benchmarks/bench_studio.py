"""Time to the second take: one `mgen studio` session vs two separate `mgen generate` runs.

    PYTHONPATH=. python benchmarks/bench_studio.py                       # tiny-random, 1 s takes, 3 rounds
    PYTHONPATH=. python benchmarks/bench_studio.py --model-key small --seconds 8 --rounds 1

Both sides run as a user runs them, as fresh `python -m musicgen_cli` processes with the same
model, seed and duration, writing WAV + sidecar. The studio side is timed from starting the
process until take 2's sidecar (written last) exists, with the two prompts piped in; the
generate side from starting the first run until the second has exited. CPU seconds (user +
system of the child processes; the studio's up to its exit right after take 2) are the steadier
figure when other processes share the machine. One untimed `mgen generate` first builds the
model and warms the page cache for both.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def mgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "musicgen_cli", *args]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def generate_twice(work: Path, common: list[str]) -> float:
    start = time.perf_counter()
    for i, prompt in enumerate(("lofi beat", "jazz trio")):
        subprocess.run(mgen("generate", *common, "--quiet", "--out", str(work / f"gen-{i}.wav"), prompt),
                       env=env(), check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - start


def studio_two_takes(work: Path, common: list[str]) -> tuple[float, float]:
    """(seconds to take 1, seconds to take 2) from the process start."""
    out = work / "studio"
    start = time.perf_counter()
    proc = subprocess.Popen(mgen("studio", *common, "--out-dir", str(out)), env=env(), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None
    proc.stdin.write("lofi beat\njazz trio\n")
    proc.stdin.flush()
    marks: list[float] = []
    while len(marks) < 2:
        if list(out.glob(f"take-{len(marks) + 1:03d}-*.json")):
            marks.append(time.perf_counter() - start)
            continue
        if proc.poll() is not None:
            raise SystemExit(f"mgen studio ended early with code {proc.returncode}")
        time.sleep(0.02)
    proc.stdin.close()
    proc.wait(timeout=600)
    return marks[0], marks[1]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    import torch

    return f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-key", default="tiny-random")
    parser.add_argument("--seconds", type=float, default=1.0, help="audio per take")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
        work = Path(tmp)
        cache = args.cache_dir or work / "cache"
        common = ["--model-key", args.model_key, "--duration", f"{args.seconds:g}", "--seed", "1", "--cache-dir", str(cache)]
        generate_twice(work / "warm", common)
        print(f"machine: {machine()}")
        print(f"model {args.model_key}, {args.seconds:g} s per take, {args.rounds} round(s)")
        print(f"{'round':>5}  {'load avg':>8}  {'studio take 1':>13}  {'studio take 2':>13}  {'2x generate':>11}  "
              f"{'studio cpu':>10}  {'generate cpu':>12}")
        rows = []
        for r in range(args.rounds):
            load = os.getloadavg()[0]
            c0 = children_cpu()
            t1, t2 = studio_two_takes(work / f"s{r}", common)
            c1 = children_cpu()
            g = generate_twice(work / f"g{r}", common)
            rows.append((t2, g, c1 - c0, children_cpu() - c1))
            print(f"{r + 1:>5}  {load:>8.1f}  {t1:>11.1f} s  {t2:>11.1f} s  {g:>9.1f} s  {rows[-1][2]:>8.1f} s  {rows[-1][3]:>10.1f} s")
        s, g, sc, gc = (statistics.median(col) for col in zip(*rows))
        print(f"median: second take after {s:.1f} s wall / {sc:.1f} s CPU in a studio session vs "
              f"{g:.1f} s wall / {gc:.1f} s CPU for two generate runs ({g / s:.2f}x wall, {gc / sc:.2f}x CPU)")


if __name__ == "__main__":
    main()
