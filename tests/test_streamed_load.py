"""GPU plans load from the file tensor by tensor, straight where the plan puts each one: the
same model `from_pretrained` gives, RAM layers locked at exactly the bytes the plan counts, and
a host peak near the plan's host figure (the meta device stands for the GPU)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

from musicgen_cli.arch import model_class
from musicgen_cli.engine.loader import load_by_plan, place_by_plan, release
from musicgen_cli.planning.hardware import probe, simulate
from musicgen_cli.planning.planner import Job, plan_memory
from musicgen_cli.planning.sizing import model_sizes
from musicgen_cli.testing import ModelSpec, write_model_folder
from musicgen_cli.testing.ledger import max_vram_for

GiB = 2**30
CPU, META = torch.device("cpu"), torch.device("meta")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_machine():
    return simulate(probe(), gpu_mem=[8 * GiB], ram=16 * GiB)


@pytest.fixture(scope="module")
def deep_folder(tmp_path_factory):
    """A tiny model with 6 decoder layers, so that a plan can keep some of them in RAM."""
    return write_model_folder(tmp_path_factory.mktemp("deep"), ModelSpec(layers=6))


def _ram_plan(folder, machine, layers: int):
    """A plan for `machine`'s GPU with its last `layers` decoder layers (and EnCodec) in RAM."""
    config = AutoConfig.from_pretrained(folder)
    whole = plan_memory(config, Job(1), machine)
    w = model_sizes(config).layer_bytes(whole.lm_dtype)
    return plan_memory(config, Job(1), machine, reserve_bytes=0, max_vram_bytes=max_vram_for(whole.estimates.peak_vram_bytes[0] - layers * w))


def _reference(folder, plan):
    """What from_pretrained reads: the LM in the plan's dtype, T5 and EnCodec in float32."""
    config = AutoConfig.from_pretrained(folder)
    model = model_class(config).from_pretrained(folder, dtype=getattr(torch, plan.lm_dtype)).eval()
    full = model_class(config).from_pretrained(folder, dtype=torch.float32)
    model.text_encoder, model.audio_encoder = full.text_encoder.eval(), full.audio_encoder.eval()
    return model


def _greedy_tokens(model, tokenizer):
    inputs = tokenizer(["jazz trio"], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False, guidance_scale=3.0, return_dict_in_generate=True)
    return out.sequences


@pytest.mark.parametrize("case", ["mono", "stereo", "melody", "ram layers"])
def test_a_gpu_plan_loads_from_the_file_what_from_pretrained_loads(tiny_models, deep_folder, gpu_machine, monkeypatch, case):
    if case == "ram layers":
        monkeypatch.setenv("FORCE_CPU_COMP", "1")
        folder = deep_folder
        plan = _ram_plan(folder, gpu_machine, 3)
        assert 5 in plan.offload.cpu_layers and plan.codec_device == "cpu"
    else:
        folder = tiny_models[case]
        plan = plan_memory(AutoConfig.from_pretrained(folder), Job(1), gpu_machine)
        assert plan.codec_device == 0 and not plan.offload.cpu_layers
    assert plan.uses_gpu and plan.lm_dtype == "bfloat16"
    loaded = load_by_plan(folder, plan, device_of=lambda i: CPU)
    reference = _reference(folder, plan)
    got, want = loaded.model.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    # and the buffers no file holds (sinusoidal positions, EnCodec's conv geometry), computed in place
    got, want = dict(loaded.model.named_buffers()), dict(reference.named_buffers())
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    assert loaded.model.text_encoder.encoder.embed_tokens.weight is loaded.model.text_encoder.shared.weight  # tied, as loaded
    assert loaded.model.generation_config.to_dict() == reference.generation_config.to_dict()
    # Where each tensor lives: the meta device stands for the GPU, the rest is on the host.
    placed = load_by_plan(folder, plan, device_of=lambda i: META).model
    ram = {f"decoder.model.decoder.layers.{i}." for i in plan.offload.cpu_layers}
    for name, tensor in placed.state_dict().items():
        host = name.startswith(("text_encoder.", *ram)) or (name.startswith("audio_encoder.") and plan.codec_device == "cpu")
        assert tensor.device == (CPU if host else META), name
    place_by_plan(reference, plan, lambda i: CPU)
    assert torch.equal(_greedy_tokens(loaded.model, loaded.tokenizer), _greedy_tokens(reference, loaded.tokenizer))


def test_a_tied_copy_stored_twice_is_read_once(tiny_models, gpu_machine, tmp_path, monkeypatch):
    import shutil

    from safetensors.torch import load_file, save_file

    from musicgen_cli.engine import streaming

    folder = shutil.copytree(tiny_models["mono"], tmp_path / "both")
    weights = load_file(folder / "model.safetensors")
    assert "text_encoder.encoder.embed_tokens.weight" not in weights  # save_pretrained stores it once
    weights["text_encoder.encoder.embed_tokens.weight"] = weights["text_encoder.shared.weight"].clone()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    copy = streaming.stored_tensors(folder)["text_encoder.encoder.embed_tokens.weight"]
    offsets = []
    read = streaming._read_into
    monkeypatch.setattr(streaming, "_read_into", lambda f, stored, out: (offsets.append(stored.offset), read(f, stored, out)))
    plan = plan_memory(AutoConfig.from_pretrained(folder), Job(1), gpu_machine)
    model = load_by_plan(folder, plan, device_of=lambda i: META).model
    assert copy.offset not in offsets and offsets  # the 94 MiB float32 table of t5-base is not read twice
    assert model.text_encoder.encoder.embed_tokens.weight is model.text_encoder.shared.weight
    assert torch.equal(model.text_encoder.shared.weight, weights["text_encoder.shared.weight"].float())


def test_ram_layers_are_locked_at_exactly_the_bytes_the_plan_counts(deep_folder, gpu_machine, monkeypatch):
    from musicgen_cli.decode import offload

    monkeypatch.setenv("FORCE_CPU_COMP", "1")
    plan = _ram_plan(deep_folder, gpu_machine, 3)
    locked, unlocked = {}, []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the driver's half stands in below
    monkeypatch.setattr(offload, "_register", lambda pointer, nbytes: locked.setdefault(pointer, nbytes) is not None)
    monkeypatch.setattr(offload, "_unregister", unlocked.append)
    model = load_by_plan(deep_folder, plan, device_of=lambda i: META).model
    layer_bytes = next(c.bytes for c in plan.components if c.name == "decoder layer 5")
    assert 5 in plan.offload.cpu_layers
    # one block per RAM layer, not rounded up
    assert sorted(locked.values()) == [layer_bytes] * len(plan.offload.cpu_layers)
    ram_layers = [c for c in plan.components if c.name.startswith("decoder layer") and c.device == "cpu"]
    assert sum(locked.values()) == sum(c.bytes for c in ram_layers)
    for i in plan.offload.cpu_layers:
        pointers = [t.data_ptr() for t in model.decoder.model.decoder.layers[i].parameters()]
        start = min(pointers)
        assert start in locked and all(start <= p < start + locked[start] for p in pointers)
    assert model.mgen_placement.pageable_bytes == 0
    release(model)
    del model
    gc.collect()
    assert sorted(unlocked) == sorted(locked)  # unlocked when the weights went


def test_a_module_moved_to_the_host_is_locked_in_one_block_of_its_bytes(monkeypatch):
    from musicgen_cli.decode import offload

    locked, unlocked = {}, []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(offload, "_register", lambda pointer, nbytes: locked.setdefault(pointer, nbytes) is not None)
    monkeypatch.setattr(offload, "_unregister", unlocked.append)
    layer = torch.nn.Linear(8, 4).to(torch.bfloat16).requires_grad_(False)
    x = torch.ones(1, 8, dtype=torch.bfloat16)
    before = layer(x)
    assert offload.to_host(layer) == 0
    assert list(locked.values()) == [(8 * 4 + 4) * 2]  # not the allocator's power of two
    assert torch.equal(layer(x), before)
    del layer
    gc.collect()
    assert unlocked == list(locked)


@pytest.fixture(scope="session")
def small_folder(tmp_path_factory):
    """A small-shaped model (t5-base, 24 decoder layers of 1024, the 32 kHz EnCodec) in bfloat16
    with random weights: 1.2 GB, written once per session (~45 s on 2 cores)."""
    return write_model_folder(tmp_path_factory.mktemp("small") / "small", ModelSpec(shape="small"), dtype=torch.bfloat16)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures the peak through Linux's /proc")
@pytest.mark.parametrize("where", ["all on the GPU", "layers and EnCodec in RAM"])
def test_a_gpu_plan_load_peaks_within_a_tenth_of_the_plans_host_figure(small_folder, gpu_machine, monkeypatch, tmp_path, where):
    if where == "all on the GPU":
        plan = plan_memory(AutoConfig.from_pretrained(small_folder), Job(1), gpu_machine)
        assert not plan.offload.cpu_layers and plan.codec_device == 0
    else:
        monkeypatch.setenv("FORCE_CPU_COMP", "1")
        plan = _ram_plan(small_folder, gpu_machine, 8)
        assert len(plan.offload.cpu_layers) >= 8 and plan.codec_device == "cpu"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan.to_json()))
    done = subprocess.run([sys.executable, "-m", "musicgen_cli.testing.load_rss", str(path), str(small_folder)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    # What stays on the host is exactly what the plan counts there; the peak on the way is
    # that plus the model's module objects and a few MiB of read buffer.
    assert measured["host_tensor_bytes"] == plan.host_weight_bytes
    assert plan.host_weight_bytes <= measured["growth"] <= 1.10 * plan.host_weight_bytes, measured


@pytest.mark.parametrize("damage", ["index escapes", "index not json", "header too long", "offsets past the end",
                                    "bytes do not match the shape", "unknown dtype"])
def test_a_damaged_or_escaping_weight_file_is_refused_before_anything_is_read(tmp_path, damage):
    from musicgen_cli.engine.streaming import stored_tensors
    from musicgen_cli.store.integrity import MAX_HEADER_BYTES
    from musicgen_cli.errors import MgenError

    header = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    if damage == "offsets past the end":
        header["w"]["data_offsets"] = [0, 64]
    elif damage == "bytes do not match the shape":
        header["w"]["shape"] = [3, 2]
    elif damage == "unknown dtype":
        header["w"]["dtype"] = "F8_E9"
    text = json.dumps(header).encode()
    size = MAX_HEADER_BYTES + 1 if damage == "header too long" else len(text)
    (tmp_path / "model.safetensors").write_bytes(size.to_bytes(8, "little") + text + bytes(16))
    (tmp_path / "outside.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + bytes(16))
    if damage.startswith("index"):
        index = {"weight_map": {"w": "../outside.safetensors"}} if damage == "index escapes" else None
        (tmp_path / "model.safetensors.index.json").write_text("{" if index is None else json.dumps(index))
    with pytest.raises(MgenError) as refused:
        stored_tensors(tmp_path)
    assert "mgen models" in refused.value.fix or "relative name" in refused.value.fix
    (tmp_path / "model.safetensors.index.json").unlink(missing_ok=True)
    if damage.startswith("index"):  # the same file without the bad index reads
        assert stored_tensors(tmp_path)["w"].shape == (2, 2)
