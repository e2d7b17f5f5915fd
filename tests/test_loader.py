"""Loading by a plan, the live readout, the hardware probe and thread settings (CPU only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

from musicgen_cli.engine.loader import load_by_plan
from musicgen_cli.engine.quantize import Int8Linear
from musicgen_cli.planning import estimates as K
from musicgen_cli.planning.hardware import configure_threads, probe, simulate
from musicgen_cli.planning.monitor import snapshot
from musicgen_cli.planning.planner import Job, plan_memory
from musicgen_cli.planning.sizing import model_sizes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cpu_machine():
    return simulate(probe(), no_gpu=True, ram=16 * 2**30)


def _generate(loaded, steps=12):
    inputs = loaded.tokenizer(["jazz trio"], return_tensors="pt")
    with torch.inference_mode():
        return loaded.model.generate(**inputs, max_new_tokens=steps, do_sample=False, guidance_scale=3.0)


def test_cpu_plan_loads_without_hooks(tiny_models, cpu_machine):
    folder = tiny_models["mono"]
    plan = plan_memory(AutoConfig.from_pretrained(folder), Job(1), cpu_machine)
    loaded = load_by_plan(folder, plan)
    assert loaded.plan is plan and loaded.load_seconds > 0
    assert not any(hasattr(m, "_hf_hook") for m in loaded.model.modules())
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    audio = _generate(loaded)
    assert audio.shape[:2] == (1, 1) and audio.shape[-1] == 640 * (12 - 3)  # delay pattern: 4 codebooks


def test_disk_plan_loads_and_matches_the_cpu_run(tiny_models, cpu_machine):
    folder = tiny_models["mono"]
    config = AutoConfig.from_pretrained(folder)
    plain = plan_memory(config, Job(1), cpu_machine)
    # Just enough RAM for all but one decoder layer: the last goes to disk.
    short = simulate(cpu_machine, ram=K.RAM_RESERVE + plain.estimates.peak_ram_bytes - model_sizes(config).layer_bytes("float32"))
    plan = plan_memory(config, Job(1), short)
    assert plan.offload.disk_layers == [1] and any("DISK" in w for w in plan.warnings)
    on_disk = load_by_plan(folder, plan)
    assert not any(hasattr(m, "_hf_hook") for m in on_disk.model.text_encoder.modules())
    assert torch.equal(_generate(load_by_plan(folder, plain)), _generate(on_disk))


def test_offloaded_text_encoder_is_made_a_plain_cpu_module(tiny_models, cpu_machine):
    # accelerate offloads "cpu" entries of a GPU map the way it offloads "disk" ones here:
    # weights in a side map, meta tensors in the module, hooks to fetch them.
    folder = tiny_models["mono"]
    plan = plan_memory(AutoConfig.from_pretrained(folder), Job(1), cpu_machine)
    baseline = _generate(load_by_plan(folder, plan))
    plan.device_map = {**plan.device_map, "text_encoder": "disk"}
    loaded = load_by_plan(folder, plan)
    encoder = loaded.model.text_encoder
    assert not any(hasattr(m, "_hf_hook") for m in encoder.modules())
    assert {p.device.type for p in encoder.parameters()} == {"cpu"}
    assert torch.equal(_generate(loaded), baseline)


def test_int8_cpu_plan_quantises_decoder_layers(tiny_models, cpu_machine):
    folder = tiny_models["mono"]
    plan = plan_memory(AutoConfig.from_pretrained(folder), Job(1), cpu_machine, quantize="int8")
    loaded = load_by_plan(folder, plan)
    layer = loaded.model.decoder.model.decoder.layers[0]
    assert isinstance(layer.fc1, Int8Linear) and layer.fc1.weight.dtype == torch.int8
    assert _generate(loaded).shape[-1] == 640 * 9


def test_melody_and_stereo_load(tiny_models, cpu_machine):
    for variant, channels in (("melody", 1), ("stereo", 2)):
        folder = tiny_models[variant]
        plan = plan_memory(AutoConfig.from_pretrained(folder), Job(1), cpu_machine)
        assert _generate(load_by_plan(folder, plan)).shape[1] == channels


def test_planned_peak_ram_is_within_15_percent_of_measured_rss():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_plan_ram.py"), "--shape", "tiny", "--duration", "1", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["audio_samples"] == 640 * 50
    assert 0.85 <= result["ratio"] <= 1.15, result


def test_snapshot_reads_this_process():
    readout = snapshot()
    assert 0 < readout.rss_bytes <= readout.peak_rss_bytes
    assert 0 < readout.ram_used_bytes < readout.ram_total_bytes
    assert len(readout.per_core_percent) == os.cpu_count()
    assert readout.torch_threads == torch.get_num_threads()
    assert len(readout.gpus) == torch.cuda.device_count()  # none here; every CUDA device elsewhere


def test_probe_sees_this_machine(tmp_path):
    machine = probe(tmp_path / "not-yet")
    assert len(machine.gpus) == torch.cuda.device_count() and machine.simulated == ()
    assert machine.logical_cores == os.cpu_count() and machine.ram_total_bytes > machine.ram_available_bytes > 0
    assert machine.disk_free_bytes > 0
    two = simulate(machine, gpu_mem=[8 * 2**30, 12 * 2**30], cores=8)
    assert [g.total_bytes for g in two.gpus] == [8 * 2**30, 12 * 2**30] and two.logical_cores == 8
    assert all(g.free_bytes < g.total_bytes for g in two.gpus)
    assert set(two.simulated) == {"gpus", "cores"}


def test_configure_threads():
    before = torch.get_num_threads()
    try:
        assert configure_threads(None, None) == (before, torch.get_num_interop_threads())
        intra, inter = configure_threads(None, 0.5)
        assert intra == max(1, round(0.5 * os.cpu_count())) == torch.get_num_threads() and inter >= 1
        assert configure_threads(1, 0.9)[0] == 1  # an explicit count wins over the target
    finally:
        torch.set_num_threads(before)
