"""The planner plans MultiBand Diffusion: its weights (from the checkpoint layout's shapes), one
decode's activations and its time, on a GPU beside EnCodec when it fits there, else on the CPU;
and what a real decode of the tiny random MBD holds against what the plan says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cli_run import run_main

from musicgen_cli.arch import build_config
from musicgen_cli.arch.diffusion import TINY_UNET, band_configs
from musicgen_cli.errors import PlanError
from musicgen_cli.planning import estimates as K
from musicgen_cli.planning.diffusion import diffusion_sizes
from musicgen_cli.planning.hardware import Machine, simulate
from musicgen_cli.planning.planner import DIFFUSION_ROW, Job, plan_memory

GiB = 2**30
BASE = Machine(gpus=(), ram_total_bytes=32 * GiB, ram_available_bytes=28 * GiB, logical_cores=8, physical_cores=8,
               disk_free_bytes=500 * GiB)
RELEASED_WIDTH = 128  # EnCodec 32 kHz's latent, which the released checkpoint conditions on
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small():
    return build_config("small", "mono")


def _row(plan):
    return next((c for c in plan.components if c.name == DIFFUSION_ROW), None)


def test_mbd_weights_are_the_checkpoint_layouts_tensors(tmp_path):
    from musicgen_cli.engine import mbd

    checkpoint = mbd.load_checkpoint(mbd.write_checkpoint(tmp_path / "tiny.th", band_configs(unet=TINY_UNET)))
    held = 0
    for band in checkpoint.bands:
        held += sum(p.numel() * p.element_size() for p in band.unet.parameters())
        if band.processor is not None:  # the band statistics; julius' filter bank is rebuilt, not stored
            held += sum(b.numel() * b.element_size() for name, b in band.processor.named_buffers() if "split_bands" not in name)
    assert diffusion_sizes(TINY_UNET["codec_dim"]).weight_bytes == held
    released = diffusion_sizes(RELEASED_WIDTH)
    assert 2.6e9 < released.weight_bytes < 2.7e9  # 4 x 165.6 M float32 parameters
    assert released.passes == 4 * 20 and released.bands == 4


def test_cpu_plan_with_mbd_differs_by_its_weights_activations_and_time(small):
    plain = plan_memory(small, Job(10), BASE)
    with_mbd = plan_memory(small, Job(10, decoder="mbd"), BASE)
    sizes = diffusion_sizes(RELEASED_WIDTH)
    assert _row(plain) is None and plain.diffusion_device is None and plain.estimates.diffusion_time_s == 0
    assert _row(with_mbd).bytes == sizes.weight_bytes and with_mbd.diffusion_device == "cpu"
    activations = sizes.decode_bytes(10, cpu=True)
    assert with_mbd.estimates.diffusion_bytes == activations
    assert with_mbd.estimates.peak_ram_bytes - plain.estimates.peak_ram_bytes == sizes.weight_bytes + activations
    added = with_mbd.estimates.total_time_s - plain.estimates.total_time_s
    assert added == pytest.approx(with_mbd.estimates.diffusion_time_s) and added > 0
    # every channel of every clip gets its passes: two clips, twice the diffusion time
    two = plan_memory(small, Job(10, num_samples=2, decoder="mbd"), BASE)
    assert two.estimates.diffusion_time_s == pytest.approx(2 * with_mbd.estimates.diffusion_time_s)


def test_activations_follow_the_unet_shapes_and_the_clip_length():
    sizes = diffusion_sizes(RELEASED_WIDTH)
    # the released U-Net's four levels are each 48 x 8000 floats a second (48, 192, 768, 3072
    # channels at 1/4, 1/16, 1/64, 1/256 of 32 kHz); its largest conv is 3072 x 3072 x 3
    assert sizes.skip_bytes_per_s == 4 * 48 * 8000 * 4 and sizes.widest_level_bytes_per_s == 48 * 8000 * 4
    assert sizes.largest_conv_bytes == 3072 * 3072 * 3 * 4
    # a second on the CPU: a pass (the skips, the live level-wide tensors, the chain's mono
    # tensors and oneDNN's copy of the largest conv) holds more than the equalisation
    unet = 4 * 48 * 8000 * 4 + K.MBD_LIVE_LEVELS * 48 * 8000 * 4 + K.MBD_CHAIN_TENSORS * 32000 * 4 + 3072 * 3072 * 3 * 4
    assert sizes.live_bytes(1, cpu=True) == unet
    # on a GPU there is no weight copy; the pass grows with the clip, and stays above the
    # equalisation's band stacks for this layout
    for seconds in (2, 30):
        assert sizes.live_bytes(seconds, cpu=False) == seconds * (unet - 3072 * 3072 * 3 * 4)
        assert sizes.live_bytes(seconds, cpu=False) > K.MBD_EQ_BAND_STACKS * K.MBD_EQ_BANDS * seconds * 32000 * 4
    # the tiny layout's narrow U-Net leaves the equalisation the larger
    tiny = diffusion_sizes(TINY_UNET["codec_dim"])
    assert tiny.live_bytes(4, cpu=True) == K.MBD_EQ_BAND_STACKS * K.MBD_EQ_BANDS * 4 * 32000 * 4
    # the plan holds them with the allocator's slack: glibc's heap on a CPU, the caching allocator's on a GPU
    assert sizes.decode_bytes(30, cpu=True) == int(sizes.live_bytes(30, cpu=True) * K.CPU_HEAP_SLACK)
    assert sizes.decode_bytes(30, cpu=False) == int(sizes.live_bytes(30, cpu=False) * K.ALLOCATOR_SLACK)


def test_gpu_plan_puts_mbd_beside_encodec_when_it_fits_else_on_the_cpu(small):
    roomy = simulate(BASE, gpu_mem=[24 * GiB])
    plain = plan_memory(small, Job(10), roomy)
    on_gpu = plan_memory(small, Job(10, decoder="mbd"), roomy)
    sizes = diffusion_sizes(RELEASED_WIDTH)
    assert on_gpu.diffusion_device == on_gpu.codec_device == 0 and _row(on_gpu).device == 0
    assert on_gpu.estimates.peak_vram_bytes[0] - plain.estimates.peak_vram_bytes[0] == sizes.weight_bytes + sizes.decode_bytes(10, cpu=False)

    tight = simulate(BASE, gpu_mem=[4 * GiB])  # the LM and EnCodec fit, 2.5 GiB more of MBD does not
    plain = plan_memory(small, Job(10), tight)
    squeezed = plan_memory(small, Job(10, decoder="mbd"), tight)
    assert plain.codec_device == 0 and squeezed.device_map == plain.device_map  # the LM keeps its GPU
    assert squeezed.diffusion_device == "cpu"
    assert squeezed.estimates.peak_vram_bytes == plain.estimates.peak_vram_bytes
    assert squeezed.estimates.peak_ram_bytes - plain.estimates.peak_ram_bytes == sizes.weight_bytes + sizes.decode_bytes(10, cpu=True)
    assert any("MultiBand Diffusion decodes on the CPU" in w for w in squeezed.warnings)
    # on the CPU it takes the CPU's rate, far slower than the GPU estimate
    assert squeezed.estimates.diffusion_time_s > 10 * on_gpu.estimates.diffusion_time_s


def test_mbd_that_fits_nowhere_names_the_encodec_decoder(small):
    plain = plan_memory(small, Job(10), simulate(BASE, no_gpu=True, ram=8 * GiB))
    # 64 MiB to spare beside the RAM reserve: not even the LM's layers on disk make room for MBD
    short = simulate(BASE, no_gpu=True, ram=plain.estimates.peak_ram_bytes + 512 * 2**20 + 64 * 2**20)
    plan_memory(small, Job(10), short)  # fits without MBD
    with pytest.raises(PlanError) as caught:
        plan_memory(small, Job(10, decoder="mbd"), short)
    assert "--decoder encodec" in caught.value.fix


def test_job_from_settings_and_covering_carry_the_decoder():
    from musicgen_cli.engine.settings import GenerateSettings

    mbd = Job.from_settings(GenerateSettings(duration=5, decoder="mbd"))
    assert mbd.decoder == "mbd" and Job.from_settings(GenerateSettings(duration=5)).decoder == "encodec"
    assert Job.covering_jobs([replace(mbd, decoder="encodec"), mbd]).decoder == "mbd"


def test_memory_plan_shows_the_mbd_row_and_json(small, cache_dir, capsys):
    args = ["memory-plan", "--decoder", "mbd", "--gpu-mem", "24GB", "-d", "10"]
    table = run_main(capsys, *args)
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("MultiBand Diffusion") == 2  # the component row and its estimate
    assert "an estimate" in " ".join(table.stdout.replace("│", " ").split())  # a GPU's rate is assumed, and said so
    data = json.loads(run_main(capsys, *args, "--json").stdout)
    assert data["diffusion_device"] == 0
    assert {"name": DIFFUSION_ROW, "bytes": diffusion_sizes(RELEASED_WIDTH).weight_bytes, "device": 0, "dtype": "float32"} in data["components"]
    assert data["estimates"]["diffusion_time_s"] > 0
    assert "MultiBand Diffusion" not in run_main(capsys, "memory-plan", "--gpu-mem", "24GB", "-d", "10").stdout


_MEASURE = """
import gc, json, sys
from pathlib import Path
import psutil, torch
from musicgen_cli.engine import codec
from musicgen_cli.engine.musicgen import load_model
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.planning.hardware import probe, simulate

torch.set_num_threads(1)
cache, seconds = sys.argv[1], float(sys.argv[2])
settings = GenerateSettings(duration=seconds, seed=1, decoder="mbd")
mg = load_model("tiny-random", cache_dir=cache, settings=settings, machine=simulate(probe(cache), no_gpu=True))
books = mg.model.decoder.config.num_codebooks

def decode(s):
    codes = torch.randint(0, 64, (1, books, round(s * mg.frame_rate)), generator=torch.Generator().manual_seed(0))
    wave = codec.decode(mg.model, codes, None)  # EnCodec's reference, made before: the MBD decode alone is measured
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here: loading's is gone
    before = psutil.Process().memory_info().rss
    mg.decode(codes, settings, 0, wave)
    peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(peak.split()[1]) * 1024 - before

decode(0.2)  # the first convolutions and FFT plans, which EnCodec's decode pays in a real run
print(json.dumps({"measured": decode(seconds), "planned": mg.plan.estimates.diffusion_bytes}))
"""


def test_measured_mbd_decode_peak_matches_the_planned_activations(cache_dir, tmp_path):
    """Peak RSS growth of a whole 8 s decode of the tiny random MBD against the live bytes the
    plan counts, in a fresh process (a peak is per process) whose malloc hands freed blocks
    back at once (a fixed mmap threshold), so RSS is what is alive. Stated tolerance: 15 %;
    the plan holds them with CPU_HEAP_SLACK on top for glibc's default heap."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(cache_dir), "8"], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    sizes = diffusion_sizes(TINY_UNET["codec_dim"])
    assert figures["planned"] == sizes.decode_bytes(8, cpu=True)
    live = sizes.live_bytes(8, cpu=True)
    assert 0.85 * live <= figures["measured"] <= 1.15 * live, figures
