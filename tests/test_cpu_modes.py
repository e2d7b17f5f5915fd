"""CPU decode modes: the int4 kernel, every mode generating on tiny models, the per-machine
kernel probe and its cache, and what a CPU plan records and suggests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from musicgen_cli.arch import build_config
from musicgen_cli.decode.types import Sampling
from musicgen_cli.decode.windows import generate_codes
from musicgen_cli.engine import cpu_probe
from musicgen_cli.engine.quantize import Int4Linear, Int8Linear, apply_kernel
from musicgen_cli.errors import MgenError
from musicgen_cli.planning import cpu_modes
from musicgen_cli.planning.hardware import Machine, simulate
from musicgen_cli.planning.planner import Job, Plan, plan_memory
from musicgen_cli.testing import ModelSpec, build_model

GiB = 2**30
CPU = Machine(gpus=(), ram_total_bytes=32 * GiB, ram_available_bytes=28 * GiB, logical_cores=2, physical_cores=2,
              disk_free_bytes=500 * GiB)


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def text(tiny_tokenizer):
    return tiny_tokenizer(["jazz piano trio", "slow ambient synth"], return_tensors="pt", padding=True)


def test_int4_round_trip_error_is_within_half_a_step_per_group():
    linear = torch.nn.Linear(128, 48)
    with torch.no_grad():
        linear.weight[3, :32] = 0.25  # a constant group: exact
    layer = Int4Linear(linear)
    weight = linear.weight.detach()
    groups = weight.reshape(48, 4, 32)
    step = (groups.amax(-1) - groups.amin(-1)) / 15
    error = (layer.dequantized() - weight).abs().reshape(48, 4, 32).amax(-1)
    # half a quantisation step, plus bf16 rounding of the scale, offset and output
    assert bool((error <= step * 0.5 + weight.abs().amax() * 2**-7).all())
    assert float(error[3, 0]) < 1e-2
    x = torch.randn(3, 5, 128)
    out, ref = layer(x), linear(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert float((out - ref).norm() / ref.norm()) < 0.15


def _mode_model(mode: str):
    model = build_model(ModelSpec(variant="mono"))
    if mode == "bfloat16":  # as the loader leaves it: decoder bf16, text encoder and codec float32
        model.to(torch.bfloat16)
        model.text_encoder.float()
        model.audio_encoder.float()
        return model
    return apply_kernel(model, mode)


@pytest.mark.parametrize("mode", list(cpu_modes.CPU_MODES))
def test_every_mode_generates_valid_tokens_and_audio(text, mode, float32_cache):
    model = _mode_model(mode)
    if mode == "int4-weight-only":
        assert isinstance(model.decoder.model.decoder.layers[0].fc1, Int4Linear)
    vocab = model.decoder.config.vocab_size
    codes = {}
    # transformers' forward cannot mix a float32 text encoder with a bf16 decoder: fast loop only
    for engine in ("fast",) if mode == "bfloat16" else ("reference", "fast"):
        torch.manual_seed(5)
        codes[engine] = generate_codes(model, input_ids=text.input_ids, attention_mask=text.attention_mask,
                                       num_frames=10, sampling=Sampling(), engine=engine)
    fast = codes["fast"]
    assert fast.shape == (2, 4, 10) and int(fast.min()) >= 0 and int(fast.max()) < vocab
    if "reference" in codes:  # both engines run the same reduced-precision weights: the same tokens
        assert torch.equal(codes["reference"], fast)
    with torch.inference_mode():
        audio = model.audio_encoder.decode(fast[None], [None]).audio_values
    assert audio.shape[0] == 2 and audio.shape[-1] > 0 and bool(torch.isfinite(audio).all())


def test_int4_leaves_the_text_encoder_and_falls_back_to_int8_for_odd_shapes():
    model = build_model(ModelSpec(variant="mono"))
    odd = torch.nn.Linear(20, 16)  # 20 input channels: no whole group of 32
    model.decoder.model.decoder.layers[0].fc2 = odd
    apply_kernel(model, "int4-weight-only")
    assert isinstance(model.decoder.model.decoder.layers[0].fc2, Int8Linear)
    assert isinstance(model.decoder.lm_heads[0], Int4Linear)
    assert isinstance(model.text_encoder.encoder.block[0].layer[0].SelfAttention.q, torch.nn.Linear)


def test_probe_is_measured_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    calls = []
    real = cpu_probe.measure

    def small_measure():
        calls.append(1)
        torch.manual_seed(5)
        probe = real(stack_bytes=2**20, hidden=128)  # the real kernels on a small layer, quickly
        drawn = torch.rand(4)
        torch.manual_seed(5)
        assert torch.equal(torch.rand(4), drawn), "the probe drew from the generator carrying the user's seed"
        probe.load_avg = 0.0  # as on a quiet machine (the shared test machine rarely is)
        return probe

    monkeypatch.setattr(cpu_probe, "measure", small_measure)
    other = cpu_modes.KernelProbe(machine_key="another CPU", threads=8, bandwidth_bytes_s=1e9, params_per_s={})
    cpu_modes.store_probe(other, tmp_path)  # another machine's probe is kept, never used here
    first = cpu_probe.ensure_probe(tmp_path)
    assert len(calls) == 1 and first.machine_key != other.machine_key
    assert str(torch.get_num_threads()) in first.machine_key and torch.__version__ in first.machine_key
    stored = json.loads((tmp_path / cpu_modes.PROBE_FILE).read_text())
    assert set(stored) == {first.machine_key, other.machine_key}
    assert set(first.params_per_s) == set(cpu_modes.CPU_MODES)
    assert all(rate > 0 for rate in first.params_per_s.values()) and first.bandwidth_bytes_s > 0
    assert first.attention_bytes_s > 0 and 0 < first.layer_glue_s < 0.1
    again = cpu_probe.ensure_probe(tmp_path)
    assert len(calls) == 1 and again == first


def test_a_probe_taken_under_load_is_measured_again_and_the_faster_figures_kept(tmp_path, monkeypatch):
    key = cpu_modes.machine_key(torch.get_num_threads(), torch.__version__)
    busy = cpu_modes.KernelProbe(key, 1, 5e9, {"float32": 1e9, "int8-dynamic": 1e9}, load_avg=9.0, cores=2)
    quiet = cpu_modes.KernelProbe(key, 1, 20e9, {"float32": 0.5e9, "int8-dynamic": 4e9}, load_avg=0.5, cores=2)
    cpu_modes.store_probe(busy, tmp_path)
    monkeypatch.setattr(cpu_probe, "measure", lambda: quiet)
    merged = cpu_probe.ensure_probe(tmp_path)
    assert merged.params_per_s == {"float32": 1e9, "int8-dynamic": 4e9} and merged.bandwidth_bytes_s == 20e9
    assert not merged.contended
    monkeypatch.setattr(cpu_probe, "measure", lambda: pytest.fail("a quiet probe is not measured again"))
    assert cpu_probe.ensure_probe(tmp_path) == merged


def _probe(rates: dict[str, float]) -> cpu_modes.KernelProbe:
    return cpu_modes.KernelProbe(machine_key="test", threads=1, bandwidth_bytes_s=20e9, params_per_s=rates)


RATES = {"float32": 1e9, "bfloat16": 2e9, "int8-weight-only": 2.5e9, "int8-dynamic": 4e9, "int4-weight-only": 3e9}


@pytest.fixture(scope="module")
def small():
    return build_config("small")


def test_cpu_plan_records_the_kernel_every_mode_and_the_fastest_gated_suggestion(small):
    config = small
    plan = plan_memory(config, Job(duration_s=30), CPU)
    cpu_modes.annotate(plan, _probe(RATES), config)
    assert plan.cpu_kernel == "float32"
    speeds = {row["mode"]: row["steps_per_s"] for row in plan.cpu_modes}
    assert set(speeds) == set(cpu_modes.CPU_MODES)
    assert speeds["int8-dynamic"] > speeds["int8-weight-only"] > speeds["float32"]
    assert plan.estimates.step_time_s == pytest.approx(1 / speeds["float32"])
    best = max((m for m in cpu_modes.CPU_MODES.values() if m.gated), key=lambda m: RATES[m.name])
    (line,) = [w for w in plan.warnings if "should run" in w]
    assert best.flags in line and best.name in line
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again.cpu_kernel == "float32" and again.cpu_modes == plan.cpu_modes


def test_int8_takes_the_faster_gated_scheme_and_int4_its_own_kernel(small):
    config = small
    for rates, expected in ((RATES, "int8-dynamic"), ({**RATES, "int8-weight-only": 9e9}, "int8-weight-only")):
        plan = plan_memory(config, Job(duration_s=10), CPU, quantize="int8")
        cpu_modes.annotate(plan, _probe(rates), config)
        assert plan.cpu_kernel == expected
    plan = plan_memory(config, Job(duration_s=10), CPU, quantize="int4")
    cpu_modes.annotate(plan, None, config)
    assert plan.cpu_kernel == "int4-weight-only" and plan.cpu_modes == []
    if not cpu_modes.CPU_MODES["int4-weight-only"].gated:  # asked for explicitly: planned, with the cost said
        assert any("fails the quality gates" in w for w in plan.warnings)
    assert plan.estimates.peak_ram_bytes < plan_memory(config, Job(duration_s=10), CPU, quantize="int8").estimates.peak_ram_bytes


def test_a_mode_outside_the_gates_is_never_suggested_however_fast(small, monkeypatch):
    failing = cpu_modes.CpuMode("int4-weight-only", "int4", "--quantize int4", "int4", "float32", 60.0, 5.0)
    monkeypatch.setitem(cpu_modes.CPU_MODES, "int4-weight-only", failing)
    plan = plan_memory(small, Job(duration_s=10), CPU)
    cpu_modes.annotate(plan, _probe({**RATES, "int4-weight-only": 50e9}), small)
    row = next(r for r in plan.cpu_modes if r["mode"] == "int4-weight-only")
    assert not row["gated"] and row["steps_per_s"] == max(r["steps_per_s"] for r in plan.cpu_modes)
    (line,) = [w for w in plan.warnings if "should run" in w]
    assert "int4" not in line and "--quantize int8" in line


def test_int4_on_a_gpu_plan_is_a_user_error(small):
    with pytest.raises(MgenError, match="CPU only"):
        plan_memory(small, Job(duration_s=10), simulate(CPU, gpu_mem=[24 * GiB]), quantize="int4")


def test_generate_with_int4_records_the_kernel_in_the_sidecar(tiny_models, tmp_path, capsys):
    from cli_run import run_main

    out = tmp_path / "clip.wav"
    result = run_main(capsys, "generate", "jazz", "--model-key", str(tiny_models["mono"]), "--quantize", "int4",
                     "--duration", "0.3", "--seed", "1", "--device", "cpu", "--out", str(out), "--num-threads", "1")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(Path(out).with_suffix(".json").read_text())
    assert sidecar["plan"]["quantize"] == "int4"
    assert sidecar["plan"]["cpu_kernel"] == "int4-weight-only"
    check = sidecar["speed_estimate"]  # the plan's expected speed against this run's
    assert check["measured_steps_per_s"] == round(sidecar["steps_per_s"], 2)
    expected = 1 / sidecar["plan"]["estimates"]["step_time_s"]
    assert check["error_pct"] == pytest.approx(100 * (expected - sidecar["steps_per_s"]) / sidecar["steps_per_s"], abs=0.1)


def test_a_probe_of_an_older_kernel_set_is_measured_again(tmp_path, monkeypatch):
    key = cpu_modes.machine_key(torch.get_num_threads(), torch.__version__)
    old_key = key.replace(f"probe {cpu_modes.PROBE_VERSION} |", f"probe {cpu_modes.PROBE_VERSION - 1} |")
    assert old_key != key
    cpu_modes.store_probe(cpu_modes.KernelProbe(old_key, 1, 20e9, {"float32": 0.5e9}, cores=2), tmp_path)
    fresh = cpu_modes.KernelProbe(key, 1, 20e9, {"float32": 5e9}, cores=2)
    monkeypatch.setattr(cpu_probe, "measure", lambda: fresh)
    assert cpu_probe.ensure_probe(tmp_path).params_per_s == {"float32": 5e9}


def test_expected_speed_counts_weights_cache_reads_and_layer_glue():
    config = build_config("small")
    d = config.decoder
    probe = cpu_modes.KernelProbe("test", 2, 60e9, {"int8-dynamic": 20e9}, attention_bytes_s=24e9,
                                  layer_glue_s=0.25e-3)
    weights = cpu_modes.linear_params(config) / 20e9
    for positions in (50, 750, 1500):
        cache = d.num_hidden_layers * 2 * 2 * positions * d.hidden_size * 4 / 24e9  # float32, 2 rows
        expected = 1 / (weights + cache + d.num_hidden_layers * 0.25e-3)
        assert probe.steps_per_s(config, "int8-dynamic", positions) == pytest.approx(expected)
    older = cpu_modes.KernelProbe("test", 2, 30e9, {"int8-dynamic": 20e9})  # cached before these terms
    assert older.steps_per_s(config, "int8-dynamic", 750) > probe.steps_per_s(config, "int8-dynamic", 750)
    merged = probe.merged(cpu_modes.KernelProbe("test", 2, 30e9, {"int8-dynamic": 10e9}, attention_bytes_s=12e9,
                                                layer_glue_s=0.5e-3))
    assert (merged.attention_bytes_s, merged.layer_glue_s) == (24e9, 0.25e-3)  # the uncontended figures


@pytest.mark.parametrize("mode", list(cpu_modes.CPU_MODES))
def test_reduced_modes_keep_a_bf16_cache_and_float32_never_does(text, mode, bf16_attends_faster):
    from musicgen_cli.decode.fastloop import Conditioning, Decoder

    model = _mode_model(mode)
    decoder = Decoder(model, 2, 8, Conditioning())
    expected = torch.float32 if mode == "float32" else torch.bfloat16
    assert {keys.dtype for keys, values in decoder.cache} == {expected}
    torch.manual_seed(5)
    codes = generate_codes(model, input_ids=text.input_ids, attention_mask=text.attention_mask, num_frames=10,
                           sampling=Sampling(), engine="fast")
    assert codes.shape == (2, 4, 10) and 0 <= int(codes.min()) and int(codes.max()) < model.decoder.config.vocab_size
    if mode == "float32":  # the float32 loop still gives transformers' tokens
        torch.manual_seed(5)
        assert torch.equal(codes, generate_codes(model, input_ids=text.input_ids, attention_mask=text.attention_mask,
                                                 num_frames=10, sampling=Sampling(), engine="reference"))


def test_a_bf16_cache_is_planned_at_its_width_and_its_read_rate(small):
    d = small.decoder
    probe = cpu_modes.KernelProbe("test", 2, 60e9, dict(RATES), attention_bytes_s=24e9, attention_bf16_bytes_s=20e9)
    assert [probe.kv_dtype(m) for m in ("float32", "int8-dynamic", "bfloat16")] == ["float32", "bfloat16", "bfloat16"]
    cache = d.num_hidden_layers * 2 * 2 * 750 * d.hidden_size
    weights = cpu_modes.linear_params(small) / RATES["int8-dynamic"]
    assert probe.steps_per_s(small, "int8-dynamic", 750) == pytest.approx(1 / (weights + cache * 2 / 20e9))
    slow_bf16 = cpu_modes.KernelProbe("test", 2, 60e9, dict(RATES), attention_bytes_s=24e9, attention_bf16_bytes_s=8e9)
    assert slow_bf16.kv_dtype("int8-dynamic") == "float32"  # half the bytes, read at a third of the rate
    job = Job(duration_s=30)
    planned = {}
    for name, kv_probe in (("bf16", probe), ("f32", slow_bf16)):
        plan = plan_memory(small, job, CPU, quantize="int8")
        cpu_modes.annotate(plan, kv_probe, small)
        planned[name] = plan
    assert planned["bf16"].cpu_kv_dtype == "bfloat16" and planned["f32"].cpu_kv_dtype == "float32"
    saved = planned["f32"].estimates.peak_ram_bytes - planned["bf16"].estimates.peak_ram_bytes
    assert saved == d.num_hidden_layers * 2 * 2 * 1500 * d.hidden_size * 2  # half of a 30 s float32 cache
    assert {row["mode"]: row["kv_cache"] for row in planned["bf16"].cpu_modes}["float32"] == "float32"


def test_mgen_probe_measures_again_and_a_busy_run_never_replaces_quiet_figures(tmp_path, monkeypatch, capsys):
    from cli_run import run_main

    key = cpu_modes.machine_key(torch.get_num_threads(), torch.__version__)
    quiet = cpu_modes.KernelProbe(key, 1, 20e9, {"float32": 1e9, "int8-dynamic": 4e9}, load_avg=0.5, cores=2,
                                  attention_bytes_s=20e9, attention_bf16_bytes_s=30e9)
    busy = cpu_modes.KernelProbe(key, 1, 5e9, {"float32": 0.5e9, "int8-dynamic": 5e9}, load_avg=9.0, cores=2)
    cpu_modes.store_probe(quiet, tmp_path)
    monkeypatch.setattr(cpu_probe, "measure", lambda: busy)
    kept, before = cpu_probe.reprobe(tmp_path)
    assert before == quiet
    assert kept.params_per_s == {"float32": 1e9, "int8-dynamic": 5e9}  # the faster of each, never the busy alone
    newer = cpu_modes.KernelProbe(key, 1, 20e9, {"float32": 0.8e9, "int8-dynamic": 3e9}, load_avg=0.2, cores=2)
    monkeypatch.setattr(cpu_probe, "measure", lambda: newer)
    result = run_main(capsys, "probe", "--cache-dir", str(tmp_path), "--json")
    assert result.returncode == 0
    shown = json.loads(result.stdout)
    assert shown["probe"]["params_per_s"] == newer.params_per_s  # a quiet run's figures replace the old
    assert shown["before"]["params_per_s"] == kept.params_per_s
    assert cpu_modes.cached_probe(key, tmp_path) == newer
    result = run_main(capsys, "probe", "--cache-dir", str(tmp_path))
    assert result.returncode == 0 and "load average 0.2 on 2 cores" in result.stdout


def test_a_plan_from_a_busy_probe_says_its_figures_are_provisional(small):
    plan = plan_memory(small, Job(duration_s=30), CPU)
    busy = cpu_modes.KernelProbe("test", 2, 20e9, dict(RATES), load_avg=8.4, cores=2)
    cpu_modes.annotate(plan, busy, small)
    assert any("provisional" in w and "8.4 on 2 cores" in w and "mgen probe" in w for w in plan.warnings)
    plan = plan_memory(small, Job(duration_s=30), CPU)
    cpu_modes.annotate(plan, _probe(RATES), small)
    assert not any("provisional" in w for w in plan.warnings)


def test_the_speed_check_is_the_estimates_error_against_the_run(small):
    plan = plan_memory(small, Job(duration_s=30), CPU)
    cpu_modes.annotate(plan, _probe(RATES), small)
    expected = 1 / plan.estimates.step_time_s
    check = plan.speed_check(expected / 2)
    assert check["error_pct"] == pytest.approx(100.0, abs=0.2)  # twice as fast as it ran
    assert plan.speed_check(expected)["error_pct"] == 0.0


def test_a_quiet_whole_run_corrects_the_next_estimate_and_a_busy_or_short_one_does_not(small, tmp_path):
    key = cpu_modes.machine_key(1, "test")
    cpu_modes.store_probe(cpu_modes.KernelProbe(key, 1, 20e9, dict(RATES), cores=2), tmp_path)

    def planned():
        plan = plan_memory(small, Job(duration_s=30), CPU)
        cpu_modes.annotate(plan, cpu_modes.cached_probe(key, tmp_path), small)
        return plan

    plan = planned()
    expected = 1 / plan.estimates.step_time_s
    steps = cpu_modes.LEARN_MIN_STEPS
    # runs that teach nothing: contended, too short, or measuring something else entirely
    assert cpu_modes.learn_from_run(plan, expected / 2, steps, load_avg=3.1, cores=2, cache_dir=tmp_path) is None
    assert cpu_modes.learn_from_run(plan, expected / 2, steps - 1, load_avg=0.1, cores=2, cache_dir=tmp_path) is None
    assert cpu_modes.learn_from_run(plan, expected / 50, steps, load_avg=0.1, cores=2, cache_dir=tmp_path) is None
    assert cpu_modes.cached_probe(key, tmp_path).calibration == {}
    assert cpu_modes.learn_from_run(plan, expected / 2, steps, load_avg=0.1, cores=2, cache_dir=tmp_path) == 0.5
    again = planned()
    assert 1 / again.estimates.step_time_s == pytest.approx(expected / 2, rel=1e-3)  # the next plan expects the run
    assert again.speed_check(expected / 2)["error_pct"] == pytest.approx(0.0, abs=0.2)
    # a second run on the corrected plan corrects the correction, not the raw figure
    assert cpu_modes.learn_from_run(again, expected / 2 * 0.9, steps, 0.1, 2, tmp_path) == pytest.approx(0.45, abs=1e-3)
    # the other modes keep their own figures; a probe measured anew drops what runs taught the old one
    assert {row["mode"]: row["calibration"] for row in planned().cpu_modes}["bfloat16"] is None
    stored = cpu_modes.cached_probe(key, tmp_path)
    assert stored.merged(stored).calibration == stored.calibration
    faster = cpu_modes.KernelProbe(key, 1, 20e9, {**RATES, "float32": 2e9}, cores=2)
    assert stored.merged(faster).calibration == {}


def test_a_gpu_plan_or_a_plan_without_a_probe_teaches_nothing(small, tmp_path):
    plan = plan_memory(small, Job(duration_s=30), CPU)  # no probe: a model too small to be weight-bound
    assert plan.cpu_probe_key is None
    assert cpu_modes.learn_from_run(plan, 1.0, 1000, 0.1, 2, tmp_path) is None
    assert not (tmp_path / cpu_modes.PROBE_FILE).exists()
