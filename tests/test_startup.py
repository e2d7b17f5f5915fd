"""Commands that generate nothing start without the heavy imports: torch and transformers take
seconds to import, more than everything such a command does. Which modules a process imported
is a fact (sys.modules at exit); how long it took is measured in benchmarks/bench_startup.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "musicgen_cli.engine.musicgen", "musicgen_cli.decode.fastloop")

# Runs the CLI as `mgen` does and reports, at exit, which of the heavy modules were imported.
_RUN = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr))
sys.argv = ["mgen", *{args!r}]
from musicgen_cli.cli.app import main
main()
"""


def _imports(args: list[str], cache: Path) -> tuple[int, list[str], str]:
    env = {**os.environ, "MGEN_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", _RUN.format(heavy=HEAVY, args=args)], capture_output=True, text=True,
                          check=False, env=env, cwd=Path(__file__).resolve().parents[1], timeout=300)
    *lines, report = done.stderr.strip().splitlines()
    return done.returncode, json.loads(report), "\n".join(lines)


@pytest.mark.parametrize("args", [["--help"], ["models"], ["generate", "--help"], ["memory-plan", "--help"]])
def test_help_and_listing_import_nothing_heavy(tmp_path, args):
    code, heavy, _ = _imports(args, tmp_path)
    assert code == 0
    assert heavy == []


@pytest.mark.parametrize("args, says", [
    (["generate", "--model-key", "tiny-random", "--segments", "{bad}"], "line 2"),
    (["generate", "--model-key", "tiny-random", "--duration", "-1", "x"], "duration"),
    (["generate", "--quantize", "int3", "x"], "int3"),
    (["generate", "--size", "small", "--model-key", "small", "x"], "--size"),
])
def test_validation_errors_come_before_any_heavy_import(tmp_path, args, says):
    bad = tmp_path / "piece.txt"
    bad.write_text("0:00 intro\n0:20\n0:10 drums\n")
    code, heavy, err = _imports([a.replace("{bad}", str(bad)) for a in args], tmp_path)
    assert code == 2
    assert says in err
    assert heavy == []


def test_memory_plan_imports_nothing_heavy_once_the_model_was_sized(tmp_path):
    args = ["memory-plan", "--size", "small", "--gpu-mem", "8GiB", "--json"]
    code, first, _ = _imports(args, tmp_path)  # sizes the model (a meta model, transformers) and stores it
    assert code == 0 and "transformers" in first
    code, heavy, _ = _imports(args, tmp_path)
    assert code == 0
    assert heavy == []


def test_a_stored_config_plans_as_the_config_it_was_stored_from(tmp_path):
    """The view kept in the cache folder carries the measured sizes and every field a plan reads:
    a plan from it is the plan from transformers' config."""
    from musicgen_cli.arch import build_config
    from musicgen_cli.planning.hardware import probe, simulate
    from musicgen_cli.planning.job import Job
    from musicgen_cli.planning.planner import plan_memory
    from musicgen_cli.planning.sizing import ConfigView, model_sizes, planning_config

    machine = simulate(probe(gpus=False), gpu_mem=[6 * 2**30], ram=16 * 2**30, cores=4)
    for variant in ("mono", "melody"):
        config = build_config("small", variant)
        assert planning_config(f"small {variant}", lambda config=config: config, tmp_path) is config  # measured, stored
        view = planning_config(f"small {variant}", lambda: pytest.fail("built again"), tmp_path)
        assert isinstance(view, ConfigView)
        assert view.sizes == model_sizes(config)
        job = Job(duration_s=20.0, num_samples=2, guidance=True, window_s=30.0)
        for options in ({}, {"quantize": "int8"}):
            assert plan_memory(view, job, machine, **options).to_json() == plan_memory(config, job, machine, **options).to_json()
