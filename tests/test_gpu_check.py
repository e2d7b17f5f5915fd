"""benchmarks/gpu_check.sh --dry-run: the GPU check's every step on the CPU, so it cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_runs_every_step(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=400)
    assert (tmp_path / "out" / "summary.txt").is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stdout[-2000:]
    for step in ("tests", "bench-tiny", "plan-tiny", "suite"):
        assert f"[{step}] exit 0" in summary, summary
    # The figures the check exists for reach the summary.
    assert "SDPA fully masked row" in summary and "greedy tokens identical (4 frames): True" in summary
    assert "decode:" in summary and summary.count('"status": "ok"') == 3
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"summary.txt", "tests.log", "bench.log", "plans.log", "suite.log"}
