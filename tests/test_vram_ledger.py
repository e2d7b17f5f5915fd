"""The VRAM ledger (musicgen_cli/testing/ledger.py): GPU plans run on the meta device with their
live bytes counted, the plan's peak held to the ledger's; the plan's workspace reserve; a
hardware probe that creates no CUDA context; the draw a clip was made with."""

from __future__ import annotations

import json
import types

import pytest
import torch

from musicgen_cli.arch import build_config
from musicgen_cli.planning.hardware import probe, simulate
from musicgen_cli.planning.planner import Job, plan_memory
from musicgen_cli.testing.ledger import Case, VramLedger, allocator_bytes, check

GiB = 2**30
MiB = 2**20


# --- the ledger itself -------------------------------------------------------------------

def test_the_ledger_counts_storages_once_rounded_and_until_they_die():
    ledger = VramLedger()
    with ledger:
        a = torch.empty(1000, dtype=torch.uint8, device="meta")  # 1000 bytes -> two 512-byte blocks
        views = [a[10:20], a.view(10, 100), a[::2]]  # views share a's storage
        host = torch.ones(10**6)  # the host is not the GPU
        assert ledger.live == 1024
        b = torch.empty(4096, dtype=torch.float32, device="meta")
        assert ledger.live == 1024 + 16384 == ledger.peak
        del a, views
        assert ledger.live == 16384  # a's storage died with its last view
        c = b.to("cpu")  # reading the stand-in back gives zeros on the host
        assert c.device.type == "cpu" and not c.any() and ledger.live == 16384
        del b
        assert ledger.live == 0 and ledger.peak == 1024 + 16384
    assert host.sum() == 10**6
    assert allocator_bytes(1) == 512 and allocator_bytes(512) == 512 and allocator_bytes(0) == 0


def test_small_stand_in_tensors_keep_their_values_for_shape_arithmetic():
    with VramLedger():
        stride = torch.tensor(4).to("meta")
        length = torch.tensor(10).to("meta")
        frames = torch.ceil((length - stride) / stride).to(torch.int64)
        assert int(frames) == 2 and (frames * 2).tolist() == 4
        big = torch.ones(1000, device="meta")
        assert float(big.sum()) == 0.0  # too large to shadow: reads as zero


# --- the plan against the ledger ---------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tokenizer")


# Each runs every decode step of the clip on the meta device, 30 to 70 s apiece on two cores;
# every shape at 10 s and 30 s, continued and with long prompts, is benchmarks/bench_vram_ledger.py.
CASES = [
    Case("small", 10),
    Case("small", 8, prompt_s=12),  # --continue: the given audio fills the cache first
    Case("medium", 10, long_prompt=True),  # 512 T5 tokens of cross-attention in each of 48 layers
    Case("large", 10),  # on an 8 GiB card: decoder layers in RAM, streamed
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_plan_predicts_the_peak_vram_the_ledger_counts(case, tokenizer_dir, cache_dir):
    checked = check(case, tokenizer_dir)
    run, plan = checked.run, checked.plan
    assert plan.uses_gpu and run.engine == "fast"
    assert run.steps == plan.estimates.decode_steps
    assert run.clips[0].shape[-1] == round((case.prompt_s + case.duration_s) * 32000)
    # placement, prefill and decode, and EnCodec all put bytes on the stand-in
    assert set(run.phase_peaks) >= {"load", "generate", "decode audio"}
    if case.shape == "large":
        assert plan.offload.mode == "stream" and plan.offload.cpu_layers  # layers in RAM, streamed
    assert abs(checked.error) <= 0.10, (case.name, checked.planned_bytes, run.peak_bytes, run.phase_peaks)


# --- the workspace reserve ---------------------------------------------------------------

def test_the_plan_keeps_a_workspace_reserve_out_of_the_usable_budget(cache_dir, capsys):
    from cli_run import run_main

    from musicgen_cli.planning import estimates as K
    from musicgen_cli.planning.placement import gpu_allowance

    machine = simulate(probe(), gpu_mem=[8 * GiB])
    plan = plan_memory(build_config("large", "mono"), Job(30), machine)
    allowance = gpu_allowance(machine.gpus[0], None, None)
    reserve = plan.workspace_reserve[0]
    assert reserve == K.CUBLAS_WORKSPACE_BYTES + int(K.FRAGMENTATION_SHARE * allowance)
    assert plan.budgets[0] == allowance - reserve
    assert plan.estimates.peak_vram_bytes[0] + reserve <= allowance
    result = run_main(capsys, "memory-plan", "--size", "large", "--gpu-mem", "8GiB", "-d", "30", "--json")
    data = json.loads(result.stdout)
    assert data["workspace_reserve"] == {"0": reserve} and data["budgets"] == {"0": allowance - reserve}
    shown = run_main(capsys, "memory-plan", "--size", "large", "--gpu-mem", "8GiB", "-d", "30").stdout
    row = next(line for line in shown.splitlines() if "workspace reserve, GPU 0" in line)
    assert "cuBLAS/cuDNN workspace" in row and "MiB" in row


# --- no CUDA context on GPUs a plan does not use -----------------------------------------

class _FakeNvml:
    """The driver's NVML as ctypes calls it, for two GPUs listed in PCI order (the reverse of torch's)."""

    def __init__(self, free_by_uuid: dict[str, int]):
        self.free = free_by_uuid
        self.handles = {f"GPU-{uuid}".encode(): n + 1 for n, uuid in enumerate(free_by_uuid)}

    def nvmlInit_v2(self):
        return 0

    def nvmlShutdown(self):
        return 0

    def nvmlDeviceGetHandleByUUID(self, name, handle):
        handle._obj.value = self.handles[name]
        return 0

    def nvmlDeviceGetMemoryInfo(self, handle, memory):
        uuid = list(self.free)[handle.value - 1]
        memory._obj.free = self.free[uuid]
        return 0


def test_the_hardware_probe_creates_no_cuda_context(monkeypatch, cache_dir):
    """Free memory comes from NVML, matched by UUID, and the link is measured in a child
    process: this process calls nothing that creates a context on any GPU."""
    import subprocess

    from musicgen_cli.planning import gpu_memory, hardware, linkprobe

    touched = []
    for name in ("mem_get_info", "set_device", "synchronize", "empty_cache", "memory_reserved", "max_memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, _name=name, **k: touched.append((_name, a)))
    monkeypatch.setattr(linkprobe, "measure", lambda device: touched.append(("measure", device)))
    monkeypatch.setattr(hardware, "_no_gpu_driver", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    props = [types.SimpleNamespace(name=f"card {i}", major=8, minor=6, total_memory=(8 + 4 * i) * GiB, uuid=f"uuid-{i}")
             for i in range(2)]
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props[index])
    monkeypatch.setattr(gpu_memory, "_nvml", lambda: _FakeNvml({"uuid-1": 11 * GiB, "uuid-0": 7 * GiB}))
    children = []
    real_run = subprocess.run

    def run(argv, **kwargs):
        if argv[:2] != [gpu_memory.sys.executable, "-c"]:
            return real_run(argv, **kwargs)
        children.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=json.dumps([20e9, 1e9]) + "\n", stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    machine = probe(cache_dir)
    assert touched == []
    assert [(g.index, g.free_bytes, g.total_bytes) for g in machine.gpus] == [(0, 7 * GiB, 8 * GiB), (1, 11 * GiB, 12 * GiB)]
    assert [g.h2d_bytes_s for g in machine.gpus] == [20e9, 20e9] and len(children) == 2  # one child per GPU, once
    assert all("measure" in argv[2] for argv in children)
    probe(cache_dir)
    assert len(children) == 2  # cached per machine
    # no NVML (a container without the library): a child process reads free memory instead
    monkeypatch.setattr(gpu_memory, "_nvml", lambda: None)
    machine = probe(cache_dir)
    assert touched == [] and "mem_get_info" in children[-1][2] and len(children) == 3
    assert [g.free_bytes for g in machine.gpus] == [20e9, 1e9]


# --- the draw a clip was made with -------------------------------------------------------

def test_the_sidecar_records_the_draw_and_a_replay_by_another_draw_says_so(cache_dir, tmp_path, capsys):
    from cli_run import run_main

    first = tmp_path / "a.wav"
    assert run_main(capsys, "generate", "-m", "tiny-random", "-d", "0.3", "--seed", "3", "--out", str(first), "-q", "x").returncode == 0
    meta = json.loads(first.with_suffix(".json").read_text())
    assert meta["draw"] == "multinomial"  # the fast loop on the CPU draws as transformers does
    same = run_main(capsys, "generate", "--from-sidecar", str(first.with_suffix(".json")), "--out", str(tmp_path / "b.wav"), "-q")
    assert same.returncode == 0 and "byte-identical" not in same.stderr
    assert (tmp_path / "b.wav").read_bytes() == first.read_bytes()
    # the same take as a GPU made it: the fast loop's exponential race
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps({**meta, "device": "cuda:0", "draw": "exponential-race"}))
    other = run_main(capsys, "generate", "--from-sidecar", str(gpu), "--device", "cpu", "--out", str(tmp_path / "c.wav"), "-q")
    assert other.returncode == 0 and (tmp_path / "c.wav").is_file()
    assert "sampled by exponential-race" in other.stderr and "not be byte-identical" in other.stderr and "on a GPU" in other.stderr
    greedy = tmp_path / "g.wav"
    assert run_main(capsys, "generate", "-m", "tiny-random", "-d", "0.3", "--greedy", "--out", str(greedy), "-q", "x").returncode == 0
    assert json.loads(greedy.with_suffix(".json").read_text())["draw"] == "argmax"


def test_the_draw_follows_the_engine_and_the_device():
    from musicgen_cli.decode.draws import draw_for
    from musicgen_cli.decode.sampler import WindowSampler
    from musicgen_cli.decode.types import Sampling

    assert [draw_for("fast", d, False) for d in ("cpu", "cuda", "meta")] == ["multinomial", "exponential-race", "exponential-race"]
    assert draw_for("reference", "cuda", False) == "multinomial" and draw_for("fast", "cuda", True) == "argmax"
    assert WindowSampler(Sampling(), torch.device("meta"), torch.float32).sync_free
    assert not WindowSampler(Sampling(), torch.device("cpu"), torch.float32).sync_free
