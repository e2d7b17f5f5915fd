"""Start-up: whole-process wall time of commands that generate nothing, and of a 1 s tiny clip.

    PYTHONPATH=. python benchmarks/bench_startup.py                       # this checkout
    PYTHONPATH=. python benchmarks/bench_startup.py --baseline /tmp/old    # and an older checkout, interleaved

Each command runs as `python -m musicgen_cli ...` in a fresh process from the checkout's root
(so that checkout's code is imported), `--repeats` times, checkouts interleaved so that load
from other processes hits both alike; prints the median and the fastest wall time of each, the
targets, and the load average before and after. One cache folder per checkout, warmed by one
run of each command first (a model is sized once, then planned from the stored sizes).

Targets (on a quiet machine): memory-plan --size large --gpu-mem 8GiB <= 1.5 s; a bad --segments
file refused <= 1 s; a 1 s tiny-random clip <= 3.0 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"memory-plan": 1.5, "bad segments": 1.0, "1 s tiny clip": 3.0}


def commands(scratch: Path) -> dict[str, list[str]]:
    bad = scratch / "bad-sections.txt"
    bad.write_text("0:00 intro\n0:20\n0:10 drums\n")
    return {
        "help": ["--help"],
        "models": ["models"],
        "memory-plan": ["memory-plan", "--size", "large", "--gpu-mem", "8GiB"],
        "bad segments": ["generate", "--model-key", "tiny-random", "--segments", str(bad)],
        "1 s tiny clip": ["generate", "--model-key", "tiny-random", "--duration", "1", "--seed", "1", "--overwrite",
                          "--out", str(scratch / "clip.wav"), "--quiet", "lofi"],
    }


def wall(checkout: Path, cache: Path, args: list[str]) -> float:
    env = {**os.environ, "MGEN_CACHE_DIR": str(cache), "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "musicgen_cli", *args], cwd=checkout, env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="an older checkout to time beside this one")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", help="time only these commands (labels as printed)")
    args = parser.parse_args()
    checkouts = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    scratch = Path(tempfile.mkdtemp())
    caches = {name: scratch / f"cache-{name}" for name in checkouts}
    cmds = {label: cmd for label, cmd in commands(scratch).items() if not args.only or label in args.only}
    print(f"load avg before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} cores")
    for name, checkout in checkouts.items():  # warm: models sized, tiny-random written, probe-free
        for cmd in cmds.values():
            wall(checkout, caches[name], cmd)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for label, cmd in cmds.items():
            for name, checkout in checkouts.items():
                times.setdefault((label, name), []).append(wall(checkout, caches[name], cmd))
    print(f"\n{'command':<16}" + "".join(f"{name + ' median':>18}{'fastest':>9}" for name in checkouts) + f"{'target':>8}")
    for label in cmds:
        row = f"{label:<16}"
        for name in checkouts:
            runs = times[(label, name)]
            row += f"{statistics.median(runs):>16.2f} s{min(runs):>7.2f} s"
        target = TARGETS.get(label)
        print(row + (f"{target:>6.1f} s" if target else ""))
    print(f"\nload avg after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.repeats} runs each, interleaved")


if __name__ == "__main__":
    main()
