"""The memory planner on shape-faithful meta-device configs: no weights are read."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from musicgen_cli.arch import build_config
from musicgen_cli.errors import MgenError, PlanError
from musicgen_cli.planning.hardware import Machine, simulate
from musicgen_cli.planning.planner import Job, Plan, plan_memory
from musicgen_cli.planning.sizing import DECODER, job_bytes, meta_model, model_sizes
from musicgen_cli.units import parse_size

GiB = 2**30
BASE = Machine(
    gpus=(),
    ram_total_bytes=32 * GiB,
    ram_available_bytes=28 * GiB,
    logical_cores=8,
    physical_cores=8,
    disk_free_bytes=500 * GiB,
)
MACHINES = {
    "cpu": dict(no_gpu=True),
    "4GB": dict(gpu_mem=[4 * GiB]),
    "6GB": dict(gpu_mem=[6 * GiB]),
    "8GB": dict(gpu_mem=[8 * GiB]),
    "12GB": dict(gpu_mem=[12 * GiB]),
    "24GB": dict(gpu_mem=[24 * GiB]),
    "12+8GB": dict(gpu_mem=[12 * GiB, 8 * GiB]),
}
_CONFIGS: dict[tuple[str, str], object] = {}
_PARAMS: dict[tuple[str, str], list[str]] = {}


def config(shape: str, variant: str = "mono"):
    key = (shape, variant)
    if key not in _CONFIGS:
        _CONFIGS[key] = build_config(shape, variant)
    return _CONFIGS[key]


def param_names(shape: str, variant: str = "mono") -> list[str]:
    if (shape, variant) not in _PARAMS:
        _PARAMS[shape, variant] = [n for n, _ in meta_model(config(shape, variant)).named_parameters()]
    return _PARAMS[shape, variant]


def layer_devices(plan: Plan) -> list:
    return [plan.device_map[f"{DECODER}.layers.{i}"] for i in range(len([k for k in plan.device_map if ".layers." in k]))]


def covered(device_map: dict, name: str) -> bool:
    return any(name == key or name.startswith(key + ".") for key in device_map)


@pytest.mark.parametrize("shape", ["small", "medium", "large"])
@pytest.mark.parametrize("hardware", list(MACHINES))
def test_plans_respect_budgets_and_cover_the_model(shape, hardware):
    machine = simulate(BASE, **MACHINES[hardware])
    cfg = config(shape)
    plan = plan_memory(cfg, Job(30), machine)

    for index, peak in plan.estimates.peak_vram_bytes.items():
        assert 0 <= peak <= plan.budgets[index]
    assert plan.estimates.peak_ram_bytes <= machine.ram_available_bytes
    assert plan.text_encoder_device == "cpu" and plan.device_map["text_encoder"] == "cpu"
    assert plan.text_encoder_dtype == "float32"
    assert plan.lm_dtype == ("bfloat16" if machine.gpus else "float32")
    assert all(covered(plan.device_map, n) for n in param_names(shape))
    devices = layer_devices(plan)
    off_gpu = [i for i, d in enumerate(devices) if not isinstance(d, int)]
    if machine.gpus:
        assert plan.lm_device == 0
        assert sorted(plan.offload.cpu_layers + plan.offload.disk_layers) == off_gpu
        assert (plan.offload.mode is None) == (not off_gpu)
    else:
        assert set(plan.device_map.values()) == {"cpu"} and plan.offload.mode is None
    assert plan.estimates.total_time_s > 0 and plan.estimates.step_time_s > 0
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_bigger_gpus_hold_more_layers_and_run_faster():
    cfg = config("large")
    plans = [plan_memory(cfg, Job(30), simulate(BASE, gpu_mem=[gb * GiB])) for gb in (4, 8, 24)]
    on_gpu = [sum(isinstance(d, int) for d in layer_devices(p)) for p in plans]
    assert on_gpu[0] < on_gpu[1] < on_gpu[2] == 48
    steps = [p.estimates.step_time_s for p in plans]
    # A few layers streamed over a pinned link hide behind the compute of the resident ones.
    assert steps[0] > steps[1] >= steps[2]


def test_two_gpus_split_layers_evenly_when_they_fit():
    plan = plan_memory(config("medium"), Job(10), simulate(BASE, gpu_mem=[24 * GiB, 24 * GiB]))
    counts = Counter(layer_devices(plan))
    assert set(counts) == {0, 1} and abs(counts[0] - counts[1]) <= 1


def test_offloaded_layers_record_stream_or_cpu_choice():
    plan = plan_memory(config("large"), Job(30), simulate(BASE, gpu_mem=[6 * GiB]))
    assert plan.offload.cpu_layers and plan.offload.mode in ("stream", "cpu")
    chosen = plan.offload.stream_step_s if plan.offload.mode == "stream" else plan.offload.cpu_step_s
    other = plan.offload.cpu_step_s if plan.offload.mode == "stream" else plan.offload.stream_step_s
    assert chosen == pytest.approx(plan.estimates.step_time_s)
    assert other is None or chosen <= other
    assert any("do not fit in VRAM" in w for w in plan.warnings)


def test_force_cpu_comp_keeps_encodec_on_cpu(monkeypatch):
    machine = simulate(BASE, gpu_mem=[24 * GiB])
    assert plan_memory(config("small"), Job(10), machine).codec_device == 0
    monkeypatch.setenv("FORCE_CPU_COMP", "1")
    plan = plan_memory(config("small"), Job(10), machine)
    assert plan.codec_device == "cpu" and plan.device_map["audio_encoder"] == "cpu"
    assert plan.codec_dtype == "float32"
    assert any("FORCE_CPU_COMP=1" in w for w in plan.warnings)


def test_reserve_and_max_vram_limit_the_budget():
    machine = simulate(BASE, gpu_mem=[24 * GiB])
    plan = plan_memory(config("large"), Job(30), machine, max_vram_bytes=3 * GiB)
    # the tensors' budget and the workspace reserve share what --max-vram allows
    assert plan.budgets[0] + plan.workspace_reserve[0] == 3 * GiB and plan.estimates.peak_vram_bytes[0] <= plan.budgets[0]
    assert plan.offload.cpu_layers
    free = machine.gpus[0].free_bytes
    plan = plan_memory(config("small"), Job(30), machine, reserve_bytes=2 * GiB)
    assert plan.budgets[0] + plan.workspace_reserve[0] == free - 2 * GiB


def test_int8_fits_more_layers():
    machine = simulate(BASE, gpu_mem=[6 * GiB])
    plain = plan_memory(config("large"), Job(30), machine)
    int8 = plan_memory(config("large"), Job(30), machine, quantize="int8")
    assert int8.quantize == "int8"
    assert len(int8.offload.cpu_layers) < len(plain.offload.cpu_layers)


def test_kv_cache_is_capped_by_the_window():
    sizes = model_sizes(config("medium"))
    kv = {d: job_bytes(sizes, duration_s=d, num_samples=1, guidance=True, window_s=30, dtype="float16", codec_dtype="float16").kv_per_layer for d in (10, 30, 120)}
    assert kv[10] < kv[30] == kv[120]
    plan = plan_memory(config("medium"), Job(120), simulate(BASE, gpu_mem=[24 * GiB]))
    assert any("window" in w for w in plan.warnings)


def test_more_samples_need_more_memory():
    machine = simulate(BASE, no_gpu=True)
    one = plan_memory(config("small"), Job(30, num_samples=1), machine).estimates.peak_ram_bytes
    four = plan_memory(config("small"), Job(30, num_samples=4), machine).estimates.peak_ram_bytes
    assert four > one


def test_short_ram_offloads_to_disk_loudly():
    plan = plan_memory(config("large"), Job(10), simulate(BASE, no_gpu=True, ram=10 * GiB))
    assert plan.offload.disk_layers
    assert plan.device_map[f"{DECODER}.layers.47"] == "disk"
    assert any("DISK" in w for w in plan.warnings)
    assert plan.estimates.peak_ram_bytes <= 10 * GiB


def test_impossible_job_says_what_would_fit():
    machine = simulate(BASE, no_gpu=True, ram=5 * GiB)
    with pytest.raises(PlanError) as err:
        plan_memory(config("large"), Job(30, num_samples=2), machine)
    text = str(err.value)
    assert "RAM" in text and "\n" not in text
    assert "--duration" in text and "--num-samples 1" in text and "--size small" in text


def test_melody_and_stereo_plans_cover_their_modules():
    machine = simulate(BASE, gpu_mem=[8 * GiB])
    for variant in ("melody", "stereo"):
        cfg = config("small", variant)
        plan = plan_memory(cfg, Job(10), machine)
        assert all(covered(plan.device_map, n) for n in param_names("small", variant))
    assert "audio_enc_to_dec_proj" in plan_memory(config("small", "melody"), Job(10), machine).device_map


def test_component_sizes_match_the_released_models():
    sizes = model_sizes(config("large"))
    total = sum(m.params for m in sizes.modules.values())
    assert 3.3e9 < total < 3.5e9  # musicgen-large: 3.3B LM + t5-base + EnCodec
    assert sizes.layer_bytes("float16") == 2 * sizes.modules[f"{DECODER}.layers.0"].params
    assert sizes.layer_bytes("float16", "int8") < 0.6 * sizes.layer_bytes("float16")


@pytest.mark.parametrize("text,expected", [("8GiB", 8 * GiB), ("8 GB", 8 * 10**9), ("512MiB", 512 * 2**20), ("1.5g", 1_500_000_000), ("1024B", 1024), (1024, 1024)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("garbage", ["", "eight", "8 XB", "-1GiB", "GiB", "8", "1024"])  # text without a unit is ambiguous
def test_parse_size_rejects_garbage(garbage):
    with pytest.raises(MgenError):
        parse_size(garbage)


def test_bad_jobs_are_user_errors():
    machine = simulate(BASE, no_gpu=True)
    for job, kwargs in ((Job(0), {}), (Job(10, num_samples=0), {}), (Job(10), {"dtype": "float8"}), (Job(10), {"quantize": "int3"})):
        with pytest.raises(MgenError):
            plan_memory(config("small"), job, machine, **kwargs)


@pytest.mark.parametrize(
    "hardware",
    [dict(gpu_mem=[4 * GiB, 4 * GiB]), dict(gpu_mem=[4 * GiB], ram=6 * GiB), dict(gpu_mem=[2 * GiB, 6 * GiB], ram=5 * GiB)],
)
def test_mixed_gpu_cpu_disk_placements(hardware):
    machine = simulate(BASE, **hardware)
    plan = plan_memory(config("large"), Job(30), machine)
    kinds = {type(d) for d in layer_devices(plan)}
    assert kinds == {int, str}  # some layers on GPUs, the rest on CPU or disk
    for index, peak in plan.estimates.peak_vram_bytes.items():
        assert peak <= plan.budgets[index]
    assert plan.estimates.peak_ram_bytes <= machine.ram_available_bytes
    devices = layer_devices(plan)
    order = {0: 0, 1: 1, "cpu": 2, "disk": 3}
    assert devices == sorted(devices, key=order.get)  # contiguous: GPUs first, then CPU, then disk


def test_a_gpu_too_small_for_one_layer_leaves_the_lm_on_cpu():
    plan = plan_memory(config("large"), Job(30), simulate(BASE, gpu_mem=[1 * GiB]))
    assert set(layer_devices(plan)) == {"cpu"} and plan.lm_device == "cpu" and plan.lm_dtype == "float32"
    assert any("not even one decoder layer" in w for w in plan.warnings)


def test_job_from_settings_clamps_the_window_once():
    from musicgen_cli.arch import WINDOW_SECONDS
    from musicgen_cli.engine.musicgen import GenerateSettings

    # The duration stays whole (the planner caps the cache at a window and sizes the decode for the clip).
    job = Job.from_settings(GenerateSettings(duration=45, num_samples=2, guidance=1.0))
    assert job == Job(duration_s=45, num_samples=2, guidance=False, window_s=WINDOW_SECONDS)
    assert Job.from_settings(GenerateSettings(window_s=50), max_window_s=40.5).window_s == 40.5
    assert Job.from_settings(GenerateSettings(window_s=12), max_window_s=40.5).window_s == 12
    wide = Job.covering([GenerateSettings(duration=5), GenerateSettings(duration=60, num_samples=3, window_s=20)])
    assert wide == Job(duration_s=60, num_samples=3, guidance=True, window_s=WINDOW_SECONDS)
    plan = plan_memory(config("small"), Job.from_settings(GenerateSettings(duration=45)), simulate(BASE, no_gpu=True))
    assert any("longer than the 30 s window" in w for w in plan.warnings)
