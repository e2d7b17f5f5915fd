"""`mgen test-suite` and the seed workflow's wrappers (the Docker files: test_docker.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})}
    return subprocess.run([*args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600)


def mgen(*args: str, **kw) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "musicgen_cli", *args, **kw)


def test_quick_suite_on_tiny_models_writes_the_three_files(cache_dir, tmp_path):
    out = tmp_path / "ws"
    out.mkdir()
    proc = mgen("test-suite", "--quick", "--model-key", "tiny-random", "--out-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("out_small.wav", "out_medium.wav", "output/out_large.wav"):  # no lyrics file: the name does not claim one
        data, rate = sf.read(out / name)
        assert rate == 32000 and abs(len(data) - 2 * 32000) <= 640
        meta = json.loads((out / name).with_suffix(".json").read_text())
        job = meta["plan"]["job"]
        assert job == {"duration_s": 2.0, "num_samples": 1, "guidance": True, "window_s": 30.0, "prompt_s": 0.0,
                       "text_tokens": min(512, len(meta["prompt"]) + 1), "decoder": "encodec"}
    report = json.loads((out / "report.json").read_text())
    assert [r["job"] for r in report] == ["small", "medium", "large"]
    assert all(r["status"] == "ok" and r["model"] == "tiny-random" for r in report)
    assert all(abs(r["duration_produced"] - 2.0) < 0.03 and r["steps_per_s"] > 0 for r in report)
    assert "out_small.wav" in proc.stdout and proc.stdout.count(" ok ") + proc.stdout.count("ok │") >= 3


def test_lyrics_title_names_the_large_output(cache_dir, tmp_path):
    # The lyrics the repo ships, copied where README's Docker section puts them.
    shutil.copy(ROOT / "examples" / "lyrics_terraform_my_heart.txt", tmp_path)
    proc = mgen(
        "test-suite", "--quick", "--only", "large", "--model-key", "large=tiny-random", "--out-dir", str(tmp_path),
        "--json", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["output"].endswith("output/terraform-my-heart.wav")
    meta = json.loads((tmp_path / "output/terraform-my-heart.json").read_text())
    assert 'song titled "Terraform My Heart"' in meta["prompt"]


def test_missing_model_is_a_skip_with_the_fetch_command(cache_dir, tmp_path):
    proc = mgen("test-suite", "--quick", "--only", "small", "--out-dir", str(tmp_path), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["status"] == "skipped"
    assert "mgen download facebook/musicgen-small" in result["message"]
    assert not (tmp_path / "out_small.wav").exists()


def test_unknown_job_is_one_line(cache_dir, tmp_path):
    proc = mgen("test-suite", "--only", "huge", "--out-dir", str(tmp_path))
    assert proc.returncode != 0 and "unknown suite job" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "wrapper,needle",
    [(["bash", "scripts/run_tests.sh"], "test-suite"), ([sys.executable, "scripts/download_model.py"], "download"),
     ([sys.executable, "workspace/hf_generate.py"], "generate")],
)
def test_seed_workflow_wrappers_reach_mgen(wrapper, needle, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "mgen").write_text(f"#!/bin/sh\nexec {sys.executable} -m musicgen_cli \"$@\"\n")
    (bindir / "mgen").chmod(0o755)
    proc = run(*wrapper, "--help", cwd=ROOT, env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    assert f"mgen {needle}" in proc.stdout or needle in proc.stdout.lower()
