"""The command line's shape: -h everywhere, shared flags declared once with one set of defaults."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from musicgen_cli.cli.app import app
from musicgen_cli.cli.options import MachineOptions, SamplingOptions
from musicgen_cli.engine.settings import GenerateSettings

runner = CliRunner()
GROUP = typer.main.get_command(app)
MACHINE_FLAGS = ("--gpu-mem", "--ram", "--no-gpu", "--reserve", "--max-vram", "--quantize", "--num-threads", "--device", "--dtype")
SAMPLING_FLAGS = ("--temperature", "--top-k", "--top-p", "--guidance", "--greedy", "--engine", "--seed")
RUNNING = ("generate", "batch", "test-suite")


def options(command: str) -> dict:
    """Flag -> its parameter (typer's own click options)."""
    return {opt: p for p in GROUP.commands[command].params if p.param_type_name == "option" for opt in p.opts}


@pytest.mark.parametrize("command", [None, *sorted(GROUP.commands)])
def test_dash_h_is_help_on_the_app_and_every_command(command):
    args = [command, "-h"] if command else ["-h"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output
    if command:
        first_line = GROUP.commands[command].help.strip().splitlines()[0]
        assert first_line[:40] in " ".join(result.output.split())


def test_machine_flags_on_every_planning_command_with_one_default():
    defaults = {f.name: f.default for f in fields(MachineOptions)}
    for command in (*RUNNING, "memory-plan"):
        found = options(command)
        for flag in MACHINE_FLAGS:
            assert flag in found, f"{command} lacks {flag}"
            param = found[flag]
            assert param.default == defaults[param.name], (command, flag)


def test_sampling_flags_share_generate_settings_defaults():
    settings = GenerateSettings()
    for command in RUNNING:
        found = options(command)
        for flag in SAMPLING_FLAGS:
            param = found[flag]
            assert param.default == getattr(settings, param.name), (command, flag)
    assert {f.name for f in fields(SamplingOptions)} <= {f.name for f in fields(GenerateSettings)}
    # The same flag means the same parameter everywhere (memory-plan takes --guidance for sizing).
    assert options("memory-plan")["--guidance"].default == settings.guidance
    assert options("generate")["--window"].default == options("memory-plan")["--window"].default == settings.window_s
    assert options("generate")["--duration"].default == options("batch")["--duration"].default == settings.duration


def test_memory_plan_takes_a_model_folder(tiny_models, cache_dir):
    result = runner.invoke(app, ["memory-plan", "--model-key", str(tiny_models["stereo"]), "--no-gpu", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["model"] == tiny_models["stereo"].name and plan["lm_dtype"] == "float32"
    assert len([k for k in plan["device_map"] if ".layers." in k]) == 2
    melody = json.loads(runner.invoke(app, ["memory-plan", "--size", "tiny-random-melody", "--no-gpu", "--json"]).output)
    assert melody["model_type"] == "musicgen_melody"


def test_unknown_machine_words_are_refused_before_anything_runs(cache_dir):
    for args in (["--device", "tpu"], ["--quantize", "int3"]):
        result = runner.invoke(app, ["memory-plan", *args])
        assert result.exit_code != 0 and "\n" not in str(result.exception)
