"""benchmarks/gpu_check.sh --dry-run: the GPU check's steps on the CPU, so it cannot rot.

In CI (.ci/run) it runs inside a copy of the GPU machine (benchmarks/gpu_sim.sh): a Python 3.12
venv of that machine's packages only (torch 2.11, transformers 5.17, huggingface_hub 1.x, ...)
plus the wheels gpu_wheels.sh derives, installed offline: what the check needs and the machine
lacks cannot hide. Without MGEN_GPU_SIM_PYTHON it runs in this environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIM_PYTHON = os.environ.get("MGEN_GPU_SIM_PYTHON")
SIM_WHEELS = os.environ.get("MGEN_GPU_SIM_WHEELS")


def run_check(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    base = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=SIM_PYTHON or sys.executable)
    if SIM_PYTHON:
        base["WHEELS"] = SIM_WHEELS or ""
    else:
        base["WHEELS"] = str(tmp_path / "no-wheels")  # a developer's .whl/ holds wheels for the GPU machine's Python
    base.update(env)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], env=base,
                          capture_output=True, text=True, timeout=2000)
    summary = tmp_path / "out" / "summary.txt"
    assert summary.is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    return done, summary.read_text()


def test_gpu_check_dry_run_runs_every_step(tmp_path):
    done, summary = run_check(tmp_path)
    assert done.returncode == 0, summary + done.stdout[-3000:]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^(\S+)\s+(ok|FAIL|TIMEOUT)\s", summary, re.MULTILINE)}
    assert rows == {"tests": "ok", "bench-tiny": "ok", "plan-tiny": "ok", "suite": "ok"}, summary
    assert "all steps passed" in summary and "FAIL" not in summary
    # the figures the check exists for reach the table
    assert re.search(r"^bench-tiny .*fast \d+\.\d steps/s.*greedy identical: True", summary, re.MULTILINE), summary
    assert re.search(r"^plan-tiny .*steps/s, plan said", summary, re.MULTILINE), summary
    assert "SDPA fully masked row" in summary
    if SIM_PYTHON:
        assert re.search(r"python 3\.12\.\d+, torch 2\.11\.\d\S*, transformers 5\.17\.\d, huggingface_hub 1\.", summary), summary
        assert re.search(r"\b1\d carried wheels\b", summary), summary
    # two files (a lent GPU machine sends back only a few): the table, and every step's output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"summary.txt", "steps.log"}
    steps = (tmp_path / "out" / "steps.log").read_text()
    assert [line.split(":")[0] for line in steps.splitlines() if line.startswith("=== ")] == [
        "=== tests", "=== bench-tiny", "=== plan-tiny", "=== suite"]
    assert "greedy identical: True" in steps


def test_a_failing_step_fails_the_check_with_a_fail_line(tmp_path):
    # a python that exits 1 for everything: every step fails, the check says so and exits 1
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'FAIL: token identity broken'\nexit 1\n")
    fake.chmod(0o755)
    done, summary = run_check(tmp_path, PYTHON=str(fake), WHEELS=str(tmp_path / "no-wheels"))
    assert done.returncode == 1
    assert re.search(r"^tests\s+FAIL\s", summary, re.MULTILINE) and "FAIL [tests] exit 1" in summary
    assert "[bench-tiny] FAIL: token identity broken" in summary and "all steps passed" not in summary
