"""The GPU path's layouts reproduced on the CPU: half-precision LM with float32 T5, layers in
RAM run by our own loop (a CPU stand-in for the GPU device), plan-side offload decisions,
freeing models. The same checks on a real GPU are tests/test_cuda.py."""

from __future__ import annotations

import types
import weakref

import pytest
import torch
from cli_run import one_line_error, run_main
from safetensors import safe_open
from transformers import AutoConfig

from musicgen_cli.arch import build_config
from musicgen_cli.decode.cudagraph import GraphedStep
from musicgen_cli.engine.loader import load_by_plan
from musicgen_cli.engine.musicgen import GenerateSettings, MusicGen
from musicgen_cli.errors import MgenError
from musicgen_cli.planning import estimates as K
from musicgen_cli.planning.hardware import probe, simulate
from musicgen_cli.planning.planner import Job, plan_memory
from musicgen_cli.planning.sizing import model_sizes
from musicgen_cli.testing.ledger import max_vram_for

CPU = torch.device("cpu")
GiB = 2**30


@pytest.fixture(scope="module")
def cpu_machine():
    return simulate(probe(), no_gpu=True, ram=16 * GiB)


def _stand_in(index: int) -> torch.device:
    return CPU


def _musicgen(folder, plan, **kwargs) -> MusicGen:
    return MusicGen(load_by_plan(folder, plan, **kwargs), None, folder)


def test_half_precision_cli_generates(tmp_path, cache_dir, capsys):
    out = tmp_path / "x.wav"
    result = run_main(capsys, "generate", "--model-key", "tiny-random", "--dtype", "bfloat16", "-d", "1", "--seed", "1",
                      "-q", "-o", str(out), "x")
    assert result.returncode == 0, result.stderr
    assert out.is_file() and out.stat().st_size > 44


def test_float16_is_not_offered(tmp_path, cache_dir, capsys):
    # a float16 model's overflow is NaN logits; bfloat16 where the GPU has it, float32 before Ampere
    line = one_line_error(run_main(capsys, "generate", "--model-key", "tiny-random", "--dtype", "float16", "-d", "1",
                                   "-o", str(tmp_path / "x.wav"), "x"))
    assert "float16 is not offered" in line and "bfloat16" in line and "float32" in line
    assert not (tmp_path / "x.wav").exists() and not any(cache_dir.iterdir())


@pytest.mark.parametrize("variant", ["mono", "stereo", "melody"])
def test_half_lm_with_float32_t5_generates_in_both_engines(tiny_models, cpu_machine, variant):
    folder = tiny_models[variant]
    plan = plan_memory(AutoConfig.from_pretrained(folder), Job(1), cpu_machine, dtype="bfloat16")
    assert (plan.lm_dtype, plan.text_encoder_dtype) == ("bfloat16", "float32")
    mg = _musicgen(folder, plan)
    model = mg.model
    assert {p.dtype for p in model.text_encoder.parameters()} == {torch.float32}
    assert model.decoder.model.decoder.layers[0].fc1.weight.dtype == torch.bfloat16
    # T5 holds the file's float32 values, not values rounded through bfloat16 on the way.
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        key = next(k for k in f.keys() if k.startswith("text_encoder.") and k.endswith("wo.weight"))
        stored = f.get_tensor(key)
    loaded = model.text_encoder.get_parameter(key[len("text_encoder."):])
    assert torch.equal(loaded, stored.float()) and not torch.equal(loaded, stored.bfloat16().float())
    for engine in ("fast", "reference"):
        result = mg.generate("jazz", GenerateSettings(duration=0.2, seed=2, engine=engine))
        channels = 2 if variant == "stereo" else 1
        assert result.engine == engine and result.clips[0].shape == (channels, 6400)


def test_planned_sizes_match_the_released_checkpoints():
    # facebook/musicgen-small's float32 model.safetensors is 2.36 GB.
    published = {"small": 2.36e9}
    for size in ("small", "medium", "large"):
        config = build_config(size, "mono")
        sizes = model_sizes(config)
        total = sum(m.nbytes("float32") for m in sizes.modules.values())
        # From the shapes: T5-base's encoder (one token table), EnCodec as measured, and the LM.
        dec = config.decoder
        d, f, k, v = dec.hidden_size, dec.ffn_dim, dec.num_codebooks, dec.vocab_size
        lm = k * (v + 1) * d + dec.num_hidden_layers * (8 * d * d + 2 * d * f + 6 * d) + 2 * d + k * d * v
        params = 109_628_544 + lm + (768 * d + d) + sizes.modules["audio_encoder"].params
        assert abs(total / (params * 4) - 1) < 0.01, (size, total, params * 4)
        if size in published:
            assert abs(total / published[size] - 1) < 0.01, (size, total)


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory):
    """A tiny model with 6 decoder layers: streaming saves VRAM only past two RAM layers."""
    from musicgen_cli.testing import ModelSpec, write_model_folder

    return write_model_folder(tmp_path_factory.mktemp("deep"), ModelSpec(layers=6))


def _ram_plan(folder, monkeypatch, link: tuple[float, float]):
    """A one-GPU plan with decoder layers in RAM, for a GPU whose link measured `link`."""
    monkeypatch.setenv("FORCE_CPU_COMP", "1")
    config = AutoConfig.from_pretrained(folder)
    machine = simulate(probe(), gpu_mem=[8 * GiB], ram=16 * GiB)
    gpu = machine.gpus[0]
    machine = simulate(machine)
    machine = type(machine)(**{**machine.__dict__, "gpus": (type(gpu)(**{**gpu.__dict__, "h2d_bytes_s": link[0],
                                                                             "host_read_bytes_s": link[1]}),)})
    whole = plan_memory(config, Job(1), machine, dtype="float32")
    assert not whole.offload.cpu_layers
    layer = model_sizes(config).layer_bytes("float32")
    plan = plan_memory(config, Job(1), machine, dtype="float32", reserve_bytes=0,
                       max_vram_bytes=max_vram_for(whole.estimates.peak_vram_bytes[0] - 3 * layer))
    assert plan.offload.cpu_layers and plan.device_map["decoder.model.decoder.layers.5"] == "cpu"
    return plan, whole


@pytest.mark.parametrize("mode, link", [("stream", (1e15, 1e6)), ("cpu", (1e6, 1e15))])
def test_plans_with_layers_in_ram_run_the_fast_loop(deep_model, monkeypatch, mode, link):
    folder = deep_model
    plan, whole = _ram_plan(folder, monkeypatch, link)
    assert plan.offload.mode == mode  # chosen in the plan from the measured link, not at run time
    mg = _musicgen(folder, plan, device_of=_stand_in)
    model = mg.model
    assert not any(hasattr(m, "_hf_hook") for m in model.modules())
    assert not any(p.is_meta for p in model.parameters())
    placement = model.mgen_placement
    assert (placement.ram_layers, placement.mode) == (plan.offload.cpu_layers, mode)
    settings = GenerateSettings(duration=0.2, seed=4)
    result = mg.generate("jazz", settings)
    assert result.engine == "fast"
    # Streaming copied each RAM layer into a buffer at every step (plus the last wrap-around
    # prefetch); CPU compute copied nothing.
    ram = len(plan.offload.cpu_layers)
    assert placement.streamed_copies == (ram * result.steps + 1 if mode == "stream" else 0)
    resident = _musicgen(folder, whole, device_of=_stand_in).generate("jazz", settings)
    assert all((a == b).all() for a, b in zip(result.clips, resident.clips))
    if mode == "stream":
        return
    reference = mg.generate("jazz", GenerateSettings(duration=0.2, seed=4, engine="reference"))
    assert reference.engine == "reference"
    assert all((a == b).all() for a, b in zip(result.clips, reference.clips))


def test_cuda_graph_is_refused_when_a_layer_computes_on_the_cpu_or_another_gpu():
    cuda = torch.device("cuda", 0)
    step = types.SimpleNamespace(device=cuda, streamer=None, where=[cuda, cuda])
    assert GraphedStep.usable(step)
    assert not GraphedStep.usable(types.SimpleNamespace(device=cuda, streamer=None, where=[cuda, CPU]))
    # large on two 6 GiB cards: 24 layers on each; one graph cannot span both
    assert not GraphedStep.usable(types.SimpleNamespace(device=cuda, streamer=None, where=[cuda, torch.device("cuda", 1)]))
    assert not GraphedStep.usable(types.SimpleNamespace(device=cuda, streamer=object(), where=[cuda, cuda]))


def test_streamer_hands_layers_back_their_host_weights(tiny_models):
    from musicgen_cli.decode.offload import Placement, streamer_for
    from musicgen_cli.testing import ModelSpec, build_model

    layers = build_model(ModelSpec(variant="mono")).decoder.model.decoder.layers
    host = layers[1].fc1.weight.data
    streamer = streamer_for(layers, Placement(main=CPU, ram_layers=[0, 1], mode="stream"))
    streamer.enter(0)
    streamer.exit(0)
    streamer.enter(1)
    assert layers[1].fc1.weight.data.data_ptr() != host.data_ptr()
    assert torch.equal(layers[1].fc1.weight.data, host)
    streamer.close()
    assert layers[1].fc1.weight.data.data_ptr() == host.data_ptr() and streamer.slots == []


def test_simulated_gpus_claim_bf16_only_from_ampere(capsys, cache_dir):
    config = build_config("small", "mono")
    modern = simulate(probe(), gpu_mem=[8 * GiB])
    assert modern.gpus[0].capability == (8, 6) and plan_memory(config, Job(10), modern).lm_dtype == "bfloat16"
    turing = simulate(probe(), gpu_mem=[8 * GiB], capability=(7, 5))
    assert plan_memory(config, Job(10), turing).lm_dtype == "float32"
    with pytest.raises(MgenError, match="bfloat16"):
        plan_memory(config, Job(10), turing, dtype="bfloat16")
    line = one_line_error(run_main(capsys, "memory-plan", "--gpu-mem", "8GiB", "--gpu-capability", "7.5",
                                   "--dtype", "bfloat16"))
    assert "compute capability 7.5" in line and "--dtype float32" in line


def test_plans_count_cublas_workspace_and_reference_cache_growth():
    config = build_config("small", "mono")
    plan = plan_memory(config, Job(10), simulate(probe(), gpu_mem=[24 * GiB]))
    sizes = model_sizes(config)
    # cuBLAS's workspaces are held back in the workspace reserve, beside the tensors
    assert plan.workspace_reserve[0] > K.CUBLAS_WORKSPACE_BYTES
    assert "V100" not in dict(K.GPU_BANDWIDTHS) and "1080" not in dict(K.GPU_BANDWIDTHS)
    assert sizes.num_layers == 24


def test_close_frees_the_model(tiny_models, cpu_machine):
    folder = tiny_models["mono"]
    plan = plan_memory(AutoConfig.from_pretrained(folder), Job(1), cpu_machine)
    with _musicgen(folder, plan) as mg:
        ref = weakref.ref(mg.model.decoder.model.decoder.layers[0].fc1.weight)
        assert mg.generate("x", GenerateSettings(duration=0.2, seed=1)).clips
    assert ref() is None
    with pytest.raises(MgenError, match="closed"):
        mg.generate("x", GenerateSettings(duration=0.2))


def test_suite_plans_each_job_at_the_duration_it_generates(tmp_path, monkeypatch):
    from musicgen_cli.errors import ModelNotFound
    from musicgen_cli.events import NullReporter
    from musicgen_cli.jobs import suite

    planned = []

    def load_model(key, *, settings, **kwargs):  # the plan's Job comes from these settings
        planned.append(settings.duration)
        raise ModelNotFound(f"{key} is not cached", "mgen download it")

    monkeypatch.setattr(suite, "load_model", load_model)
    large = suite.select_jobs(["large"], {}, False, 45.0, None)[0]
    from musicgen_cli.engine.settings import GenerateSettings

    result = suite.run_job(large, tmp_path, cache_dir=None, machine=None, download=False,
                           settings=GenerateSettings(seed=0), reporter=NullReporter())
    assert result.status == "skipped" and planned == [45.0]


def _cuda_path_draws(logits: torch.Tensor, steps: int, sampling=None, dtype=torch.bfloat16):
    from musicgen_cli.decode.sampler import WindowSampler
    from musicgen_cli.decode.types import Sampling

    draw = WindowSampler(sampling or Sampling(top_p=0.9), CPU, dtype, sync_free=True)
    return draw, [draw(logits, step) for step in range(1, steps + 1)]


def _host_reads(run) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    return sum(1 for event in prof.events() if event.name == "aten::_local_scalar_dense")


def test_the_cuda_path_sampler_reads_nothing_back_per_step():
    from musicgen_cli.decode import sampler
    from musicgen_cli.decode.types import Sampling

    logits = torch.randn(16, 2048, generator=torch.Generator().manual_seed(0))
    for sampling in (Sampling(), Sampling(top_p=0.9, temperature=0.8), Sampling(do_sample=False)):
        assert _host_reads(lambda sampling=sampling: _cuda_path_draws(logits, 5, sampling)) == 0, sampling
    # The count sees a read-back where there is one: multinomial's, the draw off CUDA.
    assert _host_reads(lambda: sampler.next_tokens(logits, Sampling())) > 0


def test_the_cuda_path_draw_follows_the_distribution_and_greedy_is_argmax():
    from musicgen_cli.decode import sampler
    from musicgen_cli.decode.types import Sampling

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(40000, 1)
    torch.manual_seed(0)
    drawn = sampler.next_tokens(logits, Sampling(guidance_scale=1, top_k=0), sync_free=True)
    share = torch.bincount(drawn, minlength=4).float() / drawn.numel()
    assert torch.allclose(share, probs, atol=0.01), share
    mixed = torch.randn(6, 64, generator=torch.Generator().manual_seed(1))
    greedy = Sampling(do_sample=False)
    assert torch.equal(sampler.next_tokens(mixed, greedy, sync_free=True), sampler.next_tokens(mixed, greedy))


def test_non_finite_logits_on_the_cuda_path_name_the_step_after_the_window():
    from musicgen_cli.errors import NonFiniteLogits

    logits = torch.randn(8, 64, generator=torch.Generator().manual_seed(2))
    draw, tokens = _cuda_path_draws(logits, 2, dtype=torch.float16)
    poisoned = logits.clone()
    poisoned[3, 5] = float("nan")
    poisoned[4, 6] = float("inf")
    # the draws go on without raising (on CUDA `multinomial` would end the context here)
    later = [draw(poisoned, step) for step in (3, 4)] + [draw(logits, 5)]
    assert all(t.shape == (4,) and 0 <= int(t.min()) and int(t.max()) < 64 for t in tokens + later)
    with pytest.raises(NonFiniteLogits) as raised:
        draw.finish()
    assert raised.value.step == 3 and "step 3 in float16" in str(raised.value) and "bfloat16" in raised.value.fix


def test_the_monitor_and_the_probe_import_where_resource_and_getloadavg_do_not_exist():
    import subprocess
    import sys
    from pathlib import Path

    # as on Windows: no `resource` module, no os.getloadavg (psutil's Linux half uses resource
    # itself; on Windows it does not, so it is imported before resource goes)
    code = """
import os, sys
import psutil
sys.modules["resource"] = None
del os.getloadavg
from musicgen_cli.planning import monitor
from musicgen_cli.engine import cpu_probe
assert monitor.peak_rss_bytes() >= psutil.Process().memory_info().rss // 2
print("imported")
"""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-2000:]


def test_encodec_decodes_in_float32_beside_a_bfloat16_lm_on_the_gpu(tiny_models, cache_dir):
    folder = tiny_models["mono"]
    plan = plan_memory(AutoConfig.from_pretrained(folder), Job(1), simulate(probe(), gpu_mem=[8 * GiB]))
    assert plan.lm_dtype == "bfloat16" and plan.codec_device == 0 and plan.codec_dtype == "float32"
    assert next(c for c in plan.components if c.name == "EnCodec").dtype == "float32"
    mg = _musicgen(folder, plan, device_of=_stand_in)
    assert {p.dtype for p in mg.model.audio_encoder.parameters()} == {torch.float32}
    assert mg.model.decoder.model.decoder.layers[0].fc1.weight.dtype == torch.bfloat16
    assert mg.generate("jazz", GenerateSettings(duration=0.2, seed=3)).clips[0].shape == (1, 6400)


def test_layers_stay_pageable_where_the_os_refuses_to_pin(monkeypatch):
    from musicgen_cli.decode import offload
    from musicgen_cli.decode.offload import to_host

    layer = torch.nn.Linear(8, 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine whose pinning is capped (WSL)
    monkeypatch.setattr(offload, "_register", lambda pointer, nbytes: False)  # cudaHostRegister refused
    assert to_host(layer) == (8 * 4 + 4) * 4
    assert layer.weight.device.type == "cpu" and layer(torch.ones(1, 8)).shape == (1, 4)


def test_a_continuation_is_planned_with_the_audio_it_continues(tmp_path, cache_dir):
    import numpy as np
    import soundfile as sf

    from musicgen_cli.planning.placement import job_bytes_for

    given = tmp_path / "intro.wav"
    sf.write(given, np.zeros(22 * 32000, np.float32), 32000)
    job = Job.from_settings(GenerateSettings(duration=8, continuation=given))
    assert job.prompt_s == 22 and job.duration_s == 8
    config = build_config("large", "mono")
    sizes = model_sizes(config)
    kv = {name: job_bytes_for(sizes, j, "bfloat16", "float32").kv_per_layer for name, j in
          (("8 s", Job(8)), ("8 s after 22 s", job), ("30 s", Job(30)))}
    assert kv["8 s after 22 s"] == kv["30 s"] > kv["8 s"]
    # large on an 8 GiB card: the 8 s plan's placement does not hold 30 s of cache
    machine = simulate(probe(), gpu_mem=[8 * GiB])
    plain, continued = plan_memory(config, Job(8), machine), plan_memory(config, job, machine)
    assert len(continued.offload.cpu_layers) > len(plain.offload.cpu_layers)
    assert continued.estimates.peak_vram_bytes[0] <= continued.budgets[0]


def test_the_live_monitor_reads_only_the_gpus_this_process_uses(monkeypatch):
    from musicgen_cli.planning import monitor

    read = []
    # two GPUs; this process has memory on GPU 1 only (a plan that placed everything there)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda index: 2**30 if index == 1 else 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: read.append(index) or (4 * GiB, 8 * GiB))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"GPU {index}")
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda index: 2**30)
    assert [g.index for g in monitor.snapshot().gpus] == [1] and read == [1]
    assert [g.index for g in monitor.snapshot(all_gpus=True).gpus] == [0, 1]  # mgen inspect-memory


def test_cross_attention_is_planned_for_the_prompts_of_the_job(cache_dir):
    from musicgen_cli.planning.placement import job_bytes_for

    settings = GenerateSettings(duration=8)
    short, long = Job.from_settings(settings, prompts=["lofi beat"]), Job.from_settings(settings, prompts=["x" * 3000, "y"])
    assert (short.text_tokens, long.text_tokens) == (10, 512)  # characters + 1, at most T5's 512
    assert Job.covering([settings]).text_tokens == 64 == Job(8).text_tokens  # prompts not known yet
    sizes = model_sizes(build_config("large", "mono"))
    kv = {n: job_bytes_for(sizes, j, "bfloat16", "float32").kv_per_layer for n, j in (("short", short), ("long", long))}
    # large, CFG: 512 tokens of keys and values in 48 layers against 10
    assert sizes.num_layers * (kv["long"] - kv["short"]) == 48 * 2 * 2 * (512 - 10) * 2048 * 2


def test_computing_ram_layers_on_the_cpu_is_priced_from_a_half_precision_projection(monkeypatch):
    import torch.nn.functional as F

    from musicgen_cli.planning import linkprobe

    projected = []
    real = F.linear

    def watched(x, weight, *args):
        projected.append((tuple(x.shape), weight.dtype, weight.numel() * weight.element_size()))
        return real(x, weight, *args)

    monkeypatch.setattr(F, "linear", watched)
    link, cpu_rate = linkprobe.measure(CPU)
    # a decode step's shape: two rows (a sample and its CFG twin) through bfloat16 weights
    assert {p[:2] for p in projected} == {((2, linkprobe.PROBE_BYTES // 2 // linkprobe.PROBE_PROJECTION_OUT), torch.bfloat16)}
    assert projected[0][2] == linkprobe.PROBE_BYTES and len(projected) == 3 and link > 0 and cpu_rate > 0



def test_layers_that_compute_on_the_cpu_keep_the_cache_the_cpu_attends_fastest_in(monkeypatch):
    from musicgen_cli.decode import fastloop
    from musicgen_cli.decode.fastloop import Decoder, condition
    from musicgen_cli.decode.offload import Placement
    from musicgen_cli.decode.types import Sampling, WindowRequest
    from musicgen_cli.testing import ModelSpec, build_model

    model = build_model(ModelSpec(layers=4), dtype=torch.bfloat16)
    ids = torch.ones(1, 3, dtype=torch.long)
    with torch.inference_mode():
        conditioning = condition(model, WindowRequest(ids, None, 4, Sampling(), None, None), CPU)
    # a GPU plan (the meta device stands for the GPU: shapes only): layers 2 and 3 in RAM,
    # computed on the CPU, where attention in float32 is faster (a CPU without AMX)
    stack = model.decoder.model.decoder
    for part in (stack.embed_tokens, stack.layers[0], stack.layers[1], stack.layer_norm, model.decoder.lm_heads):
        part.to("meta")
    model.mgen_placement = Placement(main=torch.device("meta"), ram_layers=[2, 3], mode="cpu")
    monkeypatch.setitem(fastloop._ATTENTION_DTYPES, ("cpu", torch.bfloat16), torch.float32)
    with torch.inference_mode():
        decoder = Decoder(model, 2, 8, conditioning)
    assert [k.dtype for k, _ in decoder.cache] == [torch.bfloat16, torch.bfloat16, torch.float32, torch.float32]
