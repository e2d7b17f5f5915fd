"""`mgen memory-plan` and `mgen inspect-memory` end to end."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from musicgen_cli.cli.app import app

runner = CliRunner()


def test_memory_plan_large_on_8gib_reads_at_a_glance(cache_dir):
    result = runner.invoke(app, ["memory-plan", "--size", "large", "--gpu-mem", "8GiB"], terminal_width=120)
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in ("Hardware", "simulated", "text encoder (T5)", "decoder layers 0-", "LM layers", "GPU 0 ▇▇▇", "CPU ▁▁", "peak VRAM, GPU 0", "peak RAM", "real time"):
        assert expected in out


def test_memory_plan_json_is_the_plan(cache_dir):
    result = runner.invoke(app, ["memory-plan", "--size", "large", "--gpu-mem", "8GiB", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["model"] == "large" and data["text_encoder_device"] == "cpu"
    assert data["device_map"]["decoder.model.decoder.embed_tokens"] == 0
    assert data["estimates"]["peak_vram_bytes"]["0"] <= data["budgets"]["0"]
    assert len([k for k in data["device_map"] if ".layers." in k]) == 48


def test_memory_plan_two_gpus_and_cpu(cache_dir):
    two = json.loads(runner.invoke(app, ["memory-plan", "--size", "medium", "--gpu-mem", "6GiB", "--gpu-mem", "6GiB", "--json"]).output)
    assert {v for k, v in two["device_map"].items() if ".layers." in k} == {0, 1}
    cpu = json.loads(runner.invoke(app, ["memory-plan", "--model-key", "stereo-small", "--no-gpu", "--json"]).output)
    assert set(cpu["device_map"].values()) == {"cpu"} and cpu["lm_dtype"] == "float32"


def test_memory_plan_user_errors_are_one_line(cache_dir):
    for args in (
        ["--size", "huge"],
        ["--size", "large", "--no-gpu", "--ram", "5GiB", "--num-samples", "2"],
        ["--gpu-mem", "lots"],
        ["--no-gpu", "--gpu-mem", "8GiB"],
    ):
        result = runner.invoke(app, ["memory-plan", *args])
        assert result.exit_code != 0
        assert result.exception is not None and "\n" not in str(result.exception)


def test_impossible_job_names_alternatives(cache_dir):
    result = runner.invoke(app, ["memory-plan", "--size", "large", "--no-gpu", "--ram", "5GiB", "--num-samples", "2"])
    assert "--duration" in str(result.exception) and "--num-samples 1" in str(result.exception)


def test_inspect_memory(cache_dir):
    (cache_dir / "blob").write_bytes(b"x" * 4096)
    result = runner.invoke(app, ["inspect-memory"], terminal_width=120)
    assert result.exit_code == 0, result.output
    for expected in ("RAM", "this process (RSS)", "core 0", "torch threads", "model cache", "4.0 KiB"):
        assert expected in result.output


def test_memory_plan_reads_a_cached_config(cache_dir):
    from musicgen_cli.arch import build_config
    from musicgen_cli.store.manifest import load_manifest

    def layers() -> int:
        result = runner.invoke(app, ["memory-plan", "--model-key", "tiny-random", "--no-gpu", "--json"])
        assert result.exit_code == 0, result.output
        return len([k for k in json.loads(result.output)["device_map"] if ".layers." in k])

    assert layers() == 2  # not downloaded: the manifest's shape
    manifest = load_manifest(cache_dir)
    config = build_config("tiny")
    config.decoder.num_hidden_layers = 3
    config.save_pretrained(manifest.folder(manifest.get("tiny-random")))
    assert layers() == 3  # the folder's own config.json


def test_memory_plan_unknown_shape_needs_a_download(cache_dir):
    result = runner.invoke(app, ["memory-plan", "--model-key", "someone/musicgen-custom"])
    assert result.exit_code != 0 and "mgen download someone/musicgen-custom" in str(result.exception)
