"""The GPU path on a GPU: run by benchmarks/gpu_check.sh (`pytest -m cuda`).

Without CUDA these skip, unless MGEN_CUDA_STANDIN=1 (the check's --dry-run), which runs them on
the CPU as a stand-in for GPU 0 so the script and these tests cannot rot. Figures that are
reported rather than asserted (half-precision agreement, the masked-row NaN question) are
appended to the file named by MGEN_CHECK_REPORT.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig

from musicgen_cli.decode.types import Sampling
from musicgen_cli.decode.windows import generate_codes
from musicgen_cli.engine.loader import load_by_plan
from musicgen_cli.engine.musicgen import GenerateSettings, MusicGen
from musicgen_cli.planning.hardware import probe, simulate
from musicgen_cli.planning.placement import gpu_use, job_bytes_for, make_layout
from musicgen_cli.planning.planner import Job, plan_memory
from musicgen_cli.planning.sizing import model_sizes
from musicgen_cli.testing import ModelSpec, write_model_folder
from musicgen_cli.testing.ledger import max_vram_for

pytestmark = pytest.mark.cuda
GiB = 2**30
STANDIN = not torch.cuda.is_available() and os.environ.get("MGEN_CUDA_STANDIN") == "1"
if not torch.cuda.is_available() and not STANDIN:
    pytest.skip("needs CUDA (or MGEN_CUDA_STANDIN=1)", allow_module_level=True)
DEVICE = torch.device("cpu") if STANDIN else torch.device("cuda", 0)
PROMPTS = ["jazz piano trio", "a fast techno beat with a long build-up"]  # unequal lengths: padding


def report(line: str) -> None:
    path = os.environ.get("MGEN_CHECK_REPORT")
    print(line)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def device_of(index: int) -> torch.device:
    return DEVICE if STANDIN else torch.device("cuda", index)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cuda-models")
    found = {v: write_model_folder(root / v, ModelSpec(variant=v)) for v in ("mono", "stereo", "melody")}
    found["deep"] = write_model_folder(root / "deep", ModelSpec(layers=6))
    return found


def machine(link: tuple[float, float] | None = None):
    """This GPU (a simulated 8 GiB one on the stand-in), optionally with another measured link."""
    found = simulate(probe(), gpu_mem=[8 * GiB]) if STANDIN else probe()
    if link is None:
        return found
    gpus = tuple(type(g)(**{**g.__dict__, "h2d_bytes_s": link[0], "host_read_bytes_s": link[1]}) for g in found.gpus)
    return type(found)(**{**found.__dict__, "gpus": gpus})


def load(folder: Path, plan) -> MusicGen:
    return MusicGen(load_by_plan(folder, plan, device_of=device_of), None, folder)


def plans_of(folder: Path, dtype: str | None = None) -> dict[str, object]:
    """Every layout the planner makes for a model on this GPU: all resident, layers in RAM
    streamed, layers in RAM computed on the CPU."""
    config = AutoConfig.from_pretrained(folder)
    whole = plan_memory(config, Job(1), machine(), dtype=dtype)
    found = {"resident": whole}
    sizes = model_sizes(config)
    if sizes.num_layers > 2:
        # three layers less than the LM alone needs on the GPU (EnCodec's decode does not overlap
        # the decode steps: less than the whole plan's peak would move EnCodec, not layers, off)
        jb = job_bytes_for(sizes, whole.job, whole.lm_dtype, whole.codec_dtype)
        lm = gpu_use(make_layout({0: sizes.num_layers}, sizes, None), sizes, jb, whole.lm_dtype, None, 0)
        budget = lm - 3 * sizes.layer_bytes(whole.lm_dtype)
        for mode, link in (("stream", (1e15, 1e6)), ("cpu", (1e6, 1e15))):
            plan = plan_memory(config, Job(1), machine(link), dtype=dtype, reserve_bytes=0, max_vram_bytes=max_vram_for(budget))
            assert plan.offload.cpu_layers and plan.offload.mode == mode
            found[mode] = plan
    return found


def tokens(mg: MusicGen, engine: str, frames: int, sampling: Sampling, **window) -> torch.Tensor:
    batch = mg.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    torch.manual_seed(5)
    return generate_codes(mg.model, input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                          num_frames=frames, sampling=sampling, engine=engine, **window)


def test_fast_loop_matches_the_reference_in_float32(folders):
    """Greedy tokens match on every device. Sampled ones match off CUDA only: on CUDA the fast loop
    draws by an exponential race on the device (no host sync, no device-side assert), not by
    transformers' `multinomial` (decode/sampler.py)."""
    mg = load(folders["stereo"], plans_of(folders["stereo"], "float32")["resident"])
    samplings = (Sampling(do_sample=False), Sampling()) if STANDIN else (Sampling(do_sample=False),)
    for sampling in samplings:
        assert torch.equal(tokens(mg, "fast", 30, sampling), tokens(mg, "reference", 30, sampling))


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_half_precision_greedy_agreement_is_reported(folders, dtype):
    if not STANDIN and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bfloat16 on this GPU")
    mg = load(folders["mono"], plans_of(folders["mono"], dtype)["resident"])
    fast = tokens(mg, "fast", 50, Sampling(do_sample=False))
    ref = tokens(mg, "reference", 50, Sampling(do_sample=False))
    agree = float((fast == ref).float().mean())
    report(f"{dtype} greedy agreement, fast vs reference, 50 frames: {100 * agree:.1f}%")
    assert fast.shape == ref.shape == (2, 4, 50) and int(fast.max()) < 64


def test_graphed_step_matches_the_eager_step(folders):
    from musicgen_cli.decode.cudagraph import GraphedStep
    from musicgen_cli.decode.fastloop import Decoder, condition
    from musicgen_cli.decode.types import WindowRequest

    if STANDIN:
        pytest.skip("CUDA graphs need CUDA")
    mg = load(folders["mono"], plans_of(folders["mono"], "float32")["resident"])
    batch = mg.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    request = WindowRequest(batch.input_ids, batch.attention_mask, 12, Sampling(), None, None)
    with torch.inference_mode():
        conditioning = condition(mg.model, request, DEVICE)
        eager, graphed = (Decoder(mg.model, 4, 20, conditioning) for _ in range(2))
        start = torch.full((4, 4, 1), mg.model.generation_config.pad_token_id, device=DEVICE)
        eager(start), graphed(start)
        assert GraphedStep.usable(graphed)
        step = GraphedStep(graphed)
        generator = torch.Generator().manual_seed(0)
        for _ in range(8):
            codes = torch.randint(0, 64, (4, 4, 1), generator=generator).to(DEVICE)
            torch.testing.assert_close(step(codes), eager(codes), rtol=1e-4, atol=1e-4)


def test_streamed_layers_match_resident_layers_over_three_windows(folders):
    plans = plans_of(folders["deep"], "float32")
    window = dict(window_frames=20, context_frames=5)  # 45 frames: windows of 20, 15+5, 15+5
    resident = tokens(load(folders["deep"], plans["resident"]), "fast", 45, Sampling(do_sample=False), **window)
    streamed_mg = load(folders["deep"], plans["stream"])
    streamed = tokens(streamed_mg, "fast", 45, Sampling(do_sample=False), **window)
    assert streamed_mg.model.mgen_placement.streamed_copies > 0
    assert torch.equal(streamed, resident)


def test_fully_masked_rows_in_sdpa(folders):
    """CFG's unconditional half attends to text that is all padding: every key is masked."""
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        q, k, v = (torch.randn(2, 2, 1 if n == 0 else 7, 16, device=DEVICE, dtype=dtype) for n in range(3))
        mask = torch.ones(2, 1, 1, 7, dtype=torch.bool, device=DEVICE)
        mask[1] = False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        nan = bool(out[1].isnan().any())
        zero = bool((out[1] == 0).all())
        report(f"SDPA fully masked row on {DEVICE.type}, {dtype}: {'NaN' if nan else 'zeros' if zero else 'other'}")
    # Whatever the kernel does, the fast loop's CFG logits stay finite.
    mg = load(folders["mono"], plans_of(folders["mono"])["resident"])
    got = tokens(mg, "fast", 20, Sampling())
    assert 0 <= int(got.min()) and int(got.max()) < 64


@pytest.mark.parametrize("variant", ["mono", "stereo", "melody", "deep"])
def test_every_gpu_plan_of_the_tiny_models_generates(folders, variant, monkeypatch):
    for codec_on_cpu in ("0", "1"):
        monkeypatch.setenv("FORCE_CPU_COMP", codec_on_cpu)
        for name, plan in plans_of(folders[variant]).items():
            with load(folders[variant], plan) as mg:
                for engine in ("fast", "reference"):
                    result = mg.generate("jazz", GenerateSettings(duration=0.2, seed=1, engine=engine))
                    assert result.engine == engine, name
                    assert result.clips[0].shape[-1] == 6400 and all(map(bool, [result.clips[0].any()]))
            if STANDIN:
                break  # the stand-in's plans differ only in where EnCodec runs


def test_an_out_of_memory_take_leaves_the_studio_usable(folders, tmp_path):
    """A real CUDA out-of-memory error in a take: one line naming what to lower, the CUDA context
    and the loaded model still work, the next take is written."""
    from musicgen_cli.jobs.studio import Studio, StudioOptions

    if STANDIN:
        pytest.skip("a real out-of-memory error needs CUDA (tests/test_studio.py covers the words)")
    studio = Studio(StudioOptions(model=str(folders["mono"]), out_dir=tmp_path / "takes", machine=machine()),
                    GenerateSettings(duration=0.5, seed=1))
    studio.start()
    free, _ = torch.cuda.mem_get_info(DEVICE)
    hog = torch.empty(free - 2**20, dtype=torch.uint8, device=DEVICE)  # another process takes the card
    failed = studio.handle("too big")
    assert failed.kind == "failed" and "out of memory" in failed.text and "still loaded" in failed.text
    del hog
    torch.cuda.empty_cache()
    assert float(torch.ones(4, device=DEVICE).sum()) == 4.0  # the context is alive
    made = studio.handle("fits again")
    assert made.kind == "take" and made.take.files[0].is_file() and studio.loads == 1
