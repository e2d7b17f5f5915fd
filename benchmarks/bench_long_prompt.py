"""Peak RSS of `mgen generate` on the tiny model for a short prompt and for long ones.

Before prompts were cut at the text encoder's 512 tokens, a 100 KB prompt peaked at ~14 GiB
(T5's attention is quadratic in the prompt length). Each run is its own process, so its
ru_maxrss is that run's peak.

    PYTHONPATH=. python benchmarks/bench_long_prompt.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES = {"warm-up (builds the model)": 10, "short (10 B)": 10, "20 KB": 20_000, "100 KB": 100_000}


def peak_rss_mib(prompt_file: Path, out: Path, cache: Path) -> float:
    env = {**os.environ, "MGEN_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "musicgen_cli", "generate", "-m", "tiny-random", "-d", "0.3", "-q", "--seed", "1",
           "--prompt-file", str(prompt_file), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(proc.stderr.read())
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, size in SIZES.items():
            prompt = tmp / "prompt.txt"
            prompt.write_text(("jazz " * (size // 5 + 1))[:size])
            print(f"{label:>26}: peak RSS {peak_rss_mib(prompt, tmp / f'{len(label)}-{size}.wav', tmp / 'cache'):7.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
