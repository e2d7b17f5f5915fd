"""audiocraft's documented flows, unchanged but for the import, on the tiny models.

The MUSICGEN.md API example and the demo notebook's continuation cells, with durations cut
to a second so they run in seconds on a CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from test_audio_levels import audiocraft_levels

from musicgen_cli.compat.audiocraft import MultiBandDiffusion, MusicGen, audio_write
from musicgen_cli.errors import MgenError

RATE = 32000


@pytest.fixture(scope="module")
def melody_model(tiny_models):
    return MusicGen.get_pretrained(str(tiny_models["melody"]), device="cpu")


@pytest.fixture(scope="module")
def text_model(tiny_models):
    return MusicGen.get_pretrained(str(tiny_models["stereo"]), device="cpu")


def get_bip_bip(bip_duration=0.125, frequency=440, duration=0.5, sample_rate=32000, device="cpu"):
    """The demo notebook's synthetic prompt (on the CPU)."""
    t = torch.arange(int(duration * sample_rate), device=device, dtype=torch.float) / sample_rate
    wav = torch.cos(2 * math.pi * 440 * t)[None]
    tp = (t % (2 * bip_duration)) / (2 * bip_duration)
    envelope = (tp >= 0.5).float()
    return wav * envelope


def test_musicgen_md_api_example(melody_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = melody_model
    assert model.duration == 15 and model.max_duration == 30 and model.extend_stride == 18  # fresh: 15 s
    model.set_generation_params(duration=1)  # the doc says 8; 1 keeps the test short
    wav = model.generate_unconditional(4)
    assert wav.shape == (4, 1, RATE) and wav.dtype == torch.float32
    descriptions = ["happy rock", "energetic EDM", "sad jazz"]
    wav = model.generate(descriptions)
    assert wav.shape == (3, 1, RATE)

    t = torch.arange(44100 * 2) / 44100
    melody, sr = torch.stack([torch.sin(2 * math.pi * 440 * t), torch.sin(2 * math.pi * 330 * t)]), 44100  # stereo file
    wav = model.generate_with_chroma(descriptions, melody[None].expand(3, -1, -1), sr)
    assert wav.shape == (3, 1, RATE)

    for idx, one_wav in enumerate(wav):
        path = audio_write(f"{idx}", one_wav.cpu(), model.sample_rate, strategy="loudness", loudness_compressor=True)
        assert path.name == f"{idx}.wav"
        written, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == RATE and sf.info(path).subtype == "PCM_16" and written.shape == (RATE, 1)
        expected = audiocraft_levels(one_wav.numpy(), "loudness", loudness_compressor=True)
        assert np.allclose(written.T, expected, atol=1.5 / 32768)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.wav", "1.wav", "2.wav"]


def test_notebook_continuation_cells(text_model, tmp_path, capsys):
    model = text_model
    model.set_generation_params(use_sampling=True, top_k=250, duration=1.0)
    prompt = get_bip_bip(0.125).expand(2, -1, -1)  # [2, 1, 16000]: 0.5 s at 32 kHz
    res = model.generate_continuation(prompt, 32000, ["Jazz jazz and only jazz", "Heartful EDM with beautiful synths and chords"],
                                      progress=True)
    assert res.shape == (2, 2, RATE)  # stereo model; prompt + continuation = duration
    assert " / " in capsys.readouterr().out  # progress=True shows audiocraft's counter

    # "You can also use any audio from a file": a 44.1 kHz stereo prompt trimmed to 0.4 s.
    t = torch.arange(44100) / 44100
    prompt_waveform, prompt_sr = torch.stack([torch.sin(2 * math.pi * 220 * t)] * 2), 44100
    prompt_waveform = prompt_waveform[..., : int(0.4 * prompt_sr)]
    output = model.generate_continuation(prompt_waveform, prompt_sample_rate=prompt_sr, progress=True, return_tokens=True)
    wav, tokens = output
    assert wav.shape == (1, 2, RATE) and tokens.shape == (1, 8, 50)
    # The tokens begin with the prompt's own codes: the continuation carries the prompt.
    from musicgen_cli.engine import codec

    resampled = torch.from_numpy(model._convert(prompt_waveform, prompt_sr))[None]
    assert torch.equal(tokens[..., :20], codec.encode(model.engine.model, resampled))
    with pytest.raises(MgenError, match="Prompt is longer"):
        model.generate_continuation(torch.zeros(1, 2 * RATE), RATE)


def test_chroma_input_forms(melody_model):
    model = melody_model
    model.set_generation_params(use_sampling=False, duration=0.5)  # greedy: rows do not share randomness
    t = torch.arange(RATE) / RATE
    tune = torch.sin(2 * math.pi * 440 * t)[None]
    one, one_codes = model.generate_with_chroma(["piano"], tune, RATE, return_tokens=True)  # [C, T], one description
    assert one.shape == (1, 1, RATE // 2)
    # Rows are compared by their tokens: a batch of two computes in a different float order.
    _, batched = model.generate_with_chroma(["piano", "organ"], tune[None].expand(2, -1, -1), RATE, return_tokens=True)
    assert torch.equal(batched[0], one_codes[0])
    _, mixed = model.generate_with_chroma(["piano", "organ"], [tune, None], RATE, return_tokens=True)
    _, plain = model.generate(["piano", "organ"], return_tokens=True)
    assert torch.equal(mixed[0], one_codes[0]) and torch.equal(mixed[1], plain[1])  # None: no melody for that row
    assert not torch.equal(mixed[0], plain[0])
    resampled = model.generate_with_chroma(["piano"], torch.sin(2 * math.pi * 440 * torch.arange(48000) / 48000)[None], 48000)
    assert resampled.shape == (1, 1, RATE // 2)
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        model.generate_with_chroma(["piano"], tune[None, None], RATE)
    with pytest.raises(AssertionError, match="must match"):  # audiocraft asserts it
        model.generate_with_chroma(["piano", "organ"], [tune], RATE)


def test_generation_params_checks_seeds_and_callbacks(text_model):
    model = text_model
    assert (model.sample_rate, model.frame_rate, model.audio_channels) == (RATE, 50, 2)
    model.set_generation_params()
    assert model.duration == 30.0 and model.generation_params["top_k"] == 250 and model.generation_params["cfg_coef"] == 3.0
    for bad, needle in [({"extend_stride": 30}, "stride"), ({"two_step_cfg": True}, "two_step_cfg"),
                        ({"cfg_coef_beta": 2.0}, "cfg_coef_beta")]:
        with pytest.raises(MgenError, match=needle):
            model.set_generation_params(**bad)
    model.set_generation_params(duration=0.4)
    calls = []
    model.set_custom_progress_callback(lambda done, total: calls.append((done, total)))
    torch.manual_seed(3)
    a, tokens = model.generate(["lofi"], progress=True, return_tokens=True)
    torch.manual_seed(3)
    b = model.generate(["lofi"])
    assert torch.equal(a, b) and tokens.shape == (1, 8, 20) and a.shape == (1, 2, int(0.4 * RATE))
    assert calls and calls[-1] == (20, 20)
    assert torch.allclose(model.generate_audio(tokens), a, atol=1e-6)


def test_pretrained_names_and_refusals(cache_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(UserWarning, match="facebook/musicgen-small"), pytest.raises(MgenError, match="mgen download facebook/musicgen-small"):
        MusicGen.get_pretrained("small")
    with pytest.raises(MgenError, match="MusicGen-Style"):
        MusicGen.get_pretrained("facebook/musicgen-style")
    with pytest.raises(MgenError, match="mgen download"):  # offline, nothing cached: its codec model and weights
        MultiBandDiffusion.get_mbd_musicgen(device="cpu")
    model = MusicGen.get_pretrained("debug", device="cpu")  # audiocraft's test model: mgen's tiny-random
    assert model.engine.entry.key == "tiny-random" and model.audio_channels == 1


def test_audio_write_formats_names_and_levels(tmp_path):
    t = torch.arange(RATE) / RATE
    wav = 0.2 * torch.sin(2 * math.pi * 300 * t)[None].repeat(2, 1)
    peak = audio_write(tmp_path / "sub" / "peak", wav, RATE)
    assert peak == tmp_path / "sub" / "peak.wav"
    assert math.isclose(np.abs(sf.read(peak)[0]).max(), 10 ** (-1 / 20), abs_tol=1 / 32768)
    mp3 = audio_write(tmp_path / "song", wav, RATE, format="mp3", mp3_rate=192)
    assert mp3.name == "song.mp3" and sf.info(mp3).channels == 2 and sf.info(mp3).format == "MP3"
    bare = audio_write(tmp_path / "bare", wav, RATE, format="flac", add_suffix=False)
    assert bare.name == "bare" and sf.info(bare).format == "FLAC"
    quiet = audio_write(tmp_path / "quiet", wav, RATE, normalize=False)  # peak only turns loud audio down
    assert np.allclose(sf.read(quiet)[0].T, wav.numpy(), atol=1 / 32768)
    with pytest.raises(ValueError):
        audio_write(tmp_path / "x", torch.zeros(1, 1, 10), RATE)
    with pytest.raises(MgenError, match="unknown audio format"):
        audio_write(tmp_path / "x", wav, RATE, format="aiff")
