"""MultiBand Diffusion: schedule, sampler, band split, processor and equalisation against their
definitions; the U-Net's shapes; audiocraft's checkpoint layout written, read and refused."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from musicgen_cli.engine import mbd
from musicgen_cli.arch.diffusion import DiffusionUNet
from musicgen_cli.errors import MgenError

RATE = 32000


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, one_torch_thread):
    path = tmp_path_factory.mktemp("mbd") / mbd.CHECKPOINT_NAME
    mbd.write_checkpoint(path, mbd.band_configs(unet=mbd.TINY_UNET))
    return path


def test_schedule_is_the_power_schedule_of_its_config():
    schedule = mbd.Schedule()
    betas = schedule.betas().double()
    assert betas.shape == (1000,)
    assert math.isclose(betas[0].item(), 1e-5, rel_tol=1e-5) and math.isclose(betas[-1].item(), 2.9e-2, rel_tol=1e-5)
    roots = betas ** (1 / 7.5)  # evenly spaced in beta ** (1 / beta_exp)
    assert torch.allclose(roots.diff(), torch.full((999,), (roots[-1] - roots[0]).item() / 999, dtype=torch.float64), rtol=1e-3)
    expected = np.cumprod(1 - betas.numpy())
    assert np.allclose(schedule.alpha_bars().numpy(), expected, rtol=1e-5)
    # audiocraft's default chain: range(1000)[::-50] + [0], 20 U-Net passes a band
    assert list(mbd.DEFAULT_STEPS) == list(range(1000))[::-50] + [0]
    assert len(mbd.DEFAULT_STEPS) - 1 == 20


def test_schedule_reads_the_checkpoint_config_and_refuses_other_kinds():
    cfg = mbd.band_configs()[0]["schedule"]
    assert mbd.Schedule.from_config(cfg) == mbd.Schedule()
    assert mbd.Schedule.from_config({**cfg, "clip": 3.0, "num_steps": 500}).num_steps == 500
    with pytest.raises(MgenError, match="noise schedule"):
        mbd.Schedule.from_config({**cfg, "repartition": "sigmoid"})
    with pytest.raises(MgenError, match="noise schedule"):
        mbd.Schedule.from_config({**cfg, "n_bands": 4})


class _Silent(torch.nn.Module):
    """A U-Net stand-in that predicts no noise, so the chain's arithmetic shows bare."""

    def forward(self, x, step, condition=None):
        return torch.zeros_like(x)


def test_sampler_chain_telescopes_to_the_alpha_bar_ratio():
    # With a zero noise estimate and no added noise each update divides by sqrt(ab[s] / ab[s']):
    # over the chain 999 -> 0 that is sqrt(ab[0] / ab[999]) in all.
    schedule = mbd.Schedule()
    ab = schedule.alpha_bars().double()
    x0 = torch.full((1, 1, 8), 1e-3)
    out = mbd.sample(_Silent(), schedule, x0, torch.zeros(1), draw=torch.zeros_like)
    assert torch.allclose(out.double(), x0.double() * math.sqrt(ab[0] / ab[999]), rtol=1e-4)


def test_sampler_adds_the_posterior_variance_and_clips():
    schedule = mbd.Schedule(steps=(999, 499, 0))
    ab = schedule.alpha_bars().double()
    start = torch.full((1, 1, 4), 0.5)
    out = mbd.sample(_Silent(), schedule, start, torch.zeros(1), draw=torch.ones_like)
    # step 999 -> 499: x / sqrt(a) + sqrt((1 - ab[499]) / (1 - ab[999]) * (1 - a)), a = ab[999] / ab[499]
    a1 = ab[999] / ab[499]
    x = min(0.5 / math.sqrt(a1) + math.sqrt((1 - ab[499]) / (1 - ab[999]) * (1 - a1)), 5.0)
    # step 499 -> 0, the last: no noise
    x = min(x / math.sqrt(ab[499] / ab[0]), 5.0)
    assert torch.allclose(out.double(), torch.full((1, 1, 4), x, dtype=torch.float64), rtol=1e-4)
    loud = mbd.sample(_Silent(), schedule, torch.full((1, 1, 4), 50.0), torch.zeros(1), draw=torch.zeros_like)
    assert loud.max().item() == 5.0


def _mel(f):
    return 2595 * math.log10(1 + f / 700)


def test_band_split_adds_up_and_puts_a_tone_in_its_mel_band():
    t = torch.arange(RATE) / RATE
    tone = torch.sin(2 * math.pi * 1000 * t)[None, None]
    bands = mbd.split_bands(tone, RATE, 8)
    assert bands.shape == (8, 1, 1, RATE)
    assert torch.allclose(bands.sum(0), tone, atol=1e-5)
    # cutoffs evenly spaced in mel from 0 to the Nyquist frequency
    edges = [(_mel(RATE / 2) * k / 8) for k in range(9)]
    home = next(k for k in range(8) if edges[k] <= _mel(1000) < edges[k + 1])
    energy = bands[..., 2000:-2000].pow(2).mean(dim=(1, 2, 3))
    assert int(energy.argmax()) == home and energy[home] > 0.95 * energy.sum()


def test_equalise_matches_each_band_spread_to_the_reference():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 1, RATE // 2, generator=gen)
    assert torch.allclose(mbd.equalise(ref, ref, RATE), ref, atol=1e-4)  # already matched: unchanged
    quiet = ref * 0.25
    assert torch.allclose(mbd.equalise(quiet, ref, RATE), ref, atol=1e-4)
    other = torch.randn(2, 1, RATE // 2, generator=gen)
    out = mbd.equalise(other, ref, RATE, n_bands=4)
    for band, target in zip(mbd.split_bands(out, RATE, 4), mbd.split_bands(ref, RATE, 4)):
        assert math.isclose(band.std().item(), target.std().item(), rel_tol=0.05)


def test_band_processor_returns_samples_with_the_trained_statistics():
    proc = mbd.BandProcessor(RATE, n_bands=4, power_std=0.5)
    counts = 100.0
    mean, std, target = torch.tensor([0.0, 0.1, 0.0, 0.0]), torch.tensor([1.0, 2.0, 4.0, 0.5]), torch.tensor([1.0, 0.5, 2.0, 1.0])
    proc.counts.fill_(counts)
    proc.sum_x.copy_(mean * counts)
    proc.sum_x2.copy_((std**2 + mean**2) * counts)
    proc.sum_target_x2.copy_(target * counts)
    x = torch.randn(1, 1, 4000)
    bands = mbd.split_bands(x, RATE, 4)
    expected = sum(bands[i] * (std[i] / target[i]) ** 0.5 + mean[i] for i in range(4))
    assert torch.allclose(proc.return_sample(x), expected, atol=1e-5)


SMALL_TRANSFORMER = {"transformer_ff": 64, "transformer_layers": 2}


@pytest.mark.parametrize("bottleneck", ["none", "transformer", "bilstm"])
def test_unet_keeps_any_length(bottleneck, one_torch_thread):
    torch.manual_seed(0)
    layout = {**mbd.band_configs()[0]["diffusion_unet"], **mbd.TINY_UNET, "transformer": bottleneck == "transformer", "bilstm": bottleneck == "bilstm"}
    unet = DiffusionUNet(1, 1000, **layout, **SMALL_TRANSFORMER).eval()
    rng = random.Random(1234)
    with torch.inference_mode():
        for length in [1, 255, 256, 257] + [rng.randrange(1, 10_000) for _ in range(4)]:
            frames = max(1, length // 640)
            out = unet(torch.randn(2, 1, length), 999, condition=torch.randn(2, 8, frames))
            assert out.shape == (2, 1, length)
    with pytest.raises(ValueError, match="condition"):
        unet(torch.randn(1, 1, 512), 0)


def test_condition_reaches_the_output_through_the_deepest_skip(one_torch_thread):
    # With no bottleneck network the bottom is zeroed, yet audiocraft's U-Net (its condition is
    # added in place) still hears the condition through the deepest skip: the released weights
    # depend on it.
    torch.manual_seed(0)
    unet = DiffusionUNet(1, 1000, **{**mbd.band_configs()[0]["diffusion_unet"], **mbd.TINY_UNET}).eval()
    x = torch.randn(1, 1, 6400)
    with torch.inference_mode():
        a, b = unet(x, 500, condition=torch.zeros(1, 8, 10)), unet(x, 500, condition=torch.ones(1, 8, 10))
    assert not torch.allclose(a, b)


def test_a_checkpoint_loads_as_the_file_maps_it_not_as_a_heap_copy(tmp_path, tiny_checkpoint):
    """The U-Nets take the mapped file's tensors: loading adds no heap copy of the weights (the
    released file would otherwise put 2.6 GB on the heap on its way to a GPU), and they compute
    exactly what a module the weights were copied into computes."""
    from musicgen_cli.arch.diffusion import bottleneck_sizes, from_checkpoint_keys
    from musicgen_cli.planning.monitor import anon_rss_bytes

    mbd.load_checkpoint(tiny_checkpoint)  # the load's own imports and allocations, first
    path = mbd.write_checkpoint(tmp_path / "mid.th", mbd.band_configs(unet={**mbd.TINY_UNET, "hidden": 32, "growth": 3})[:2])
    before = anon_rss_bytes()
    loaded = mbd.load_checkpoint(path)
    growth = anon_rss_bytes() - before
    weights = sum(p.numel() * p.element_size() for band in loaded.bands for p in band.unet.parameters())
    assert weights > 100 * 2**20 and growth < 0.25 * weights, (growth, weights)  # a copy adds all of it

    entry = torch.load(path, weights_only=True)[0]
    cfg, state = entry["cfg"], from_checkpoint_keys(entry["model_state"])
    copied = DiffusionUNet(cfg["channels"], cfg["schedule"]["num_steps"], **cfg["diffusion_unet"], **bottleneck_sizes(state))
    copied.load_state_dict(state)
    x, condition = torch.randn(1, 1, 6400), torch.randn(1, cfg["diffusion_unet"]["codec_dim"], 10)
    with torch.inference_mode():
        assert torch.equal(loaded.bands[0].unet(x, 500, condition=condition), copied.eval()(x, 500, condition=condition))


def test_transformer_sizes_are_read_from_the_weights(tmp_path):
    configs = mbd.band_configs(unet={**mbd.TINY_UNET, "transformer": True})[:1]
    mbd.write_checkpoint(tmp_path / "t.th", configs, bottleneck=SMALL_TRANSFORMER)
    raw = torch.load(tmp_path / "t.th", weights_only=True)
    assert "transformer.layers.1.self_attn.mha.in_proj_weight" in raw[0]["model_state"]
    unet = mbd.load_checkpoint(tmp_path / "t.th").bands[0].unet
    assert len(unet.transformer.layers) == 2 and unet.transformer.layers[0].linear1.out_features == 64


def test_checkpoint_round_trip_in_audiocraft_layout(tiny_checkpoint):
    raw = torch.load(tiny_checkpoint, weights_only=True)
    assert raw["sample_rate"] == RATE and raw["n_bands"] == 4 and set(raw) == {"sample_rate", "n_bands", 0, 1, 2, 3}
    assert set(raw[0]) == {"cfg", "model_state", "processor_state"}
    assert set(raw[0]["cfg"]) >= {"channels", "schedule", "diffusion_unet", "processor"}
    keys = raw[0]["model_state"].keys()
    assert "conv_codec.weight" in keys and not any(k.startswith("transformer.") for k in keys)
    assert "embeddings.0.weight" in keys and "decoders.0.convtr.weight" in keys and "encoders.0.conv.weight" in keys
    assert raw[0]["processor_state"] == {} and "sum_target_x2" in raw[2]["processor_state"]

    loaded = mbd.load_checkpoint(tiny_checkpoint)
    assert loaded.sample_rate == RATE and len(loaded.bands) == 4
    assert [b.processor is not None for b in loaded.bands] == [False, False, True, True]
    assert loaded.bands[3].processor.power_std == 0.75
    state = loaded.bands[1].unet.state_dict()
    assert state.keys() == raw[1]["model_state"].keys()
    for key, value in raw[1]["model_state"].items():
        assert torch.equal(state[key], value)
    assert loaded.fingerprint == mbd.file_digest(tiny_checkpoint)
    assert mbd.passes(loaded) == 80


def test_checkpoint_with_omegaconf_config_loads(tmp_path, tiny_checkpoint):
    omegaconf = pytest.importorskip("omegaconf")
    raw = torch.load(tiny_checkpoint, weights_only=True)
    for index in range(4):
        raw[index]["cfg"] = omegaconf.OmegaConf.create(raw[index]["cfg"])
    torch.save(raw, tmp_path / "cfg.th")
    loaded = mbd.load_checkpoint(tmp_path / "cfg.th")
    assert loaded.bands[2].cfg["processor"]["power_std"] == 0.4


def test_bad_checkpoints_are_refused_in_one_line(tmp_path, tiny_checkpoint):
    torch.save({"best_state": {}}, tmp_path / "other.th")
    with pytest.raises(MgenError, match="not a MultiBand Diffusion checkpoint"):
        mbd.load_checkpoint(tmp_path / "other.th")
    raw = torch.load(tiny_checkpoint, weights_only=True)
    raw[1]["model_state"].pop("conv_codec.weight")
    torch.save(raw, tmp_path / "short.th")
    with pytest.raises(MgenError, match="band 1's weights do not fit"):
        mbd.load_checkpoint(tmp_path / "short.th")
    raw = torch.load(tiny_checkpoint, weights_only=True)
    raw[0]["cfg"]["diffusion_unet"]["cross_attention"] = True
    torch.save(raw, tmp_path / "cross.th")
    with pytest.raises(MgenError, match="cross-attention"):
        mbd.load_checkpoint(tmp_path / "cross.th")
    torch.save({"n_bands": 1, "sample_rate": RATE, 0: {"cfg": _Pickled(), "model_state": {}}}, tmp_path / "code.th")
    with pytest.raises(MgenError, match="pickled code"):
        mbd.load_checkpoint(tmp_path / "code.th")


def _codec_of(folder):
    from transformers import AutoConfig

    from musicgen_cli.arch import model_class

    config = AutoConfig.from_pretrained(folder)
    return model_class(config).from_pretrained(folder).audio_encoder.eval()


class _Pickled:
    """A class that torch.load(weights_only=True) must refuse to build."""


def test_decode_shapes_and_seeded_noise(tiny_checkpoint, tiny_models):
    checkpoint = mbd.load_checkpoint(tiny_checkpoint)
    codec = _codec_of(tiny_models["mono"])
    codes = torch.randint(0, 64, (2, 4, 10))
    reference = codec.decode(codes[None], [None]).audio_values
    steps = []
    first = mbd.decode_mono(checkpoint, codec, codes, reference, mbd.noise_source(torch.Generator().manual_seed(3)), lambda: steps.append(1))
    again = mbd.decode_mono(checkpoint, codec, codes, reference, mbd.noise_source(torch.Generator().manual_seed(3)))
    other = mbd.decode_mono(checkpoint, codec, codes, reference, mbd.noise_source(torch.Generator().manual_seed(4)))
    assert first.shape == reference.shape == (2, 1, 10 * 640)
    assert len(steps) == 80
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.isfinite(first).all()
