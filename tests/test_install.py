"""Installs other than editable: a wheel installed outside the checkout has its manifest and
keeps models in the user cache directory; a checkout keeps them in model-cache/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import soundfile as sf

from musicgen_cli.store.cache import cache_location

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_a_checkout_keeps_models_beside_it(monkeypatch, tmp_path):
    monkeypatch.delenv("MGEN_CACHE_DIR", raising=False)
    assert cache_location() == (ROOT / "model-cache", "checkout")
    monkeypatch.setenv("MGEN_CACHE_DIR", str(tmp_path / "env"))
    assert cache_location() == (tmp_path / "env", "MGEN_CACHE_DIR")
    assert cache_location(tmp_path / "flag") == (tmp_path / "flag", "--cache-dir")


def test_wheel_installed_outside_the_checkout_lists_and_generates(tmp_path):
    # Build from a copy, so nothing (build/, *.egg-info) lands in the checkout.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "musicgen_cli", src / "musicgen_cli", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "manifest.json", "README.md"):
        shutil.copy(ROOT / name, src)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", src)
    (wheel,) = (tmp_path / "dist").glob("mgen-*.whl")
    assert "musicgen_cli/manifest.json" in zipfile.ZipFile(wheel).namelist()
    target = tmp_path / "target"
    run(sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, wheel)

    work, xdg = tmp_path / "work", tmp_path / "xdg"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MGEN_", "HF_", "PYTHON"))}
    env.update(PYTHONPATH=str(target), XDG_CACHE_HOME=str(xdg), HF_HUB_OFFLINE="1", COLUMNS="200")
    where = run(sys.executable, "-c", "import musicgen_cli.store.manifest as m; print(m.__file__)", cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(target)  # nothing imported from the checkout

    mgen = target / "bin" / "mgen"  # the console script pip wrote
    listed = run(mgen, "models", cwd=work, env=env)
    assert f"cache: {xdg / 'mgen'} (user cache)" in listed.stdout
    assert "tiny-random" in listed.stdout and "small" in listed.stdout  # the shipped manifest was read

    run(mgen, "generate", "--model-key", "tiny-random", "--duration", "1", "--seed", "3", "--out", "clip.wav",
        "--quiet", "a calm lofi beat", cwd=work, env=env)
    data, rate = sf.read(work / "clip.wav")
    assert rate == 32000 and abs(len(data) - 32000) <= 640
    assert (xdg / "mgen" / "tiny-random" / ".mgen-ready.json").is_file()  # built into the user cache

    other = tmp_path / "elsewhere"
    rows = json.loads(run(mgen, "models", "--json", cwd=work, env={**env, "MGEN_CACHE_DIR": str(other)}).stdout)
    assert {Path(r["folder"]).parent for r in rows} == {other}
    assert not next(r for r in rows if r["key"] == "tiny-random")["cached"]
