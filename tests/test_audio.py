"""Audio I/O, remixing, normalisation, lyrics folding and slugs."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from musicgen_cli.engine import audio
from musicgen_cli.engine.prompts import fold_lyrics, read_lyrics, slugify
from musicgen_cli.errors import AudioError, MgenError


def test_write_then_read_round_trip_in_each_format(tmp_path):
    wave = (0.5 * np.sin(np.linspace(0, 200, 32000))).astype(np.float32)[None].repeat(2, 0)
    for fmt in audio.FORMATS:
        path = audio.write_audio(tmp_path / f"x.{fmt}", wave, 32000)
        back, rate = audio.read_audio(path)
        assert rate == 32000 and back.shape == (2, 32000), fmt
    assert sf.info(tmp_path / "x.wav").subtype == "PCM_16"
    assert sf.info(tmp_path / "x.mp3").format == "MP3"
    audio.write_audio(tmp_path / "y.wav", wave, 32000, subtype="PCM_24")
    assert sf.info(tmp_path / "y.wav").subtype == "PCM_24"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.flac", "x.mp3", "x.ogg", "x.wav", "y.wav"]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(AudioError):
        audio.write_audio(tmp_path / "x.wav", np.zeros((1, 10), np.float32), 32000, subtype="VORBIS")
    with pytest.raises(AudioError):
        audio.write_audio(tmp_path / "x.aiff", np.zeros((1, 10), np.float32), 32000)
    assert list(tmp_path.iterdir()) == []


def test_resample_and_channel_matching():
    wave = np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32)
    out = audio.resample(wave, 44100, 32000)
    assert out.shape == (2, 32000) and out.dtype == np.float32
    assert audio.match_channels(wave, 1).shape == (1, 44100)
    assert np.allclose(audio.match_channels(wave, 1)[0], wave.mean(0))
    up = audio.match_channels(wave[:1], 2)
    assert up.shape == (2, 44100) and np.array_equal(up[0], up[1])
    assert np.array_equal(audio.match_channels(np.vstack([wave, wave[:1]]), 2), wave)  # audiocraft: first channels
    tone = np.sin(2 * np.pi * 1000 * np.arange(44100) / 44100).astype(np.float32)[None]
    resampled = audio.resample(tone, 44100, 32000)[0]
    spectrum = np.abs(np.fft.rfft(resampled))
    assert abs(np.argmax(spectrum) - 1000) <= 1  # 1 s of audio: bin index = Hz
    expected = np.sin(2 * np.pi * 1000 * np.arange(32000) / 32000)
    assert np.max(np.abs(resampled[1000:-1000] - expected[1000:-1000])) < 1e-3  # soxr HQ: a clean tone


@pytest.mark.parametrize("content,needle", [(b"garbage", "cannot read"), (None, "does not exist")])
def test_bad_input_files(tmp_path, content, needle):
    path = tmp_path / "in.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=needle):
        audio.read_audio(path)


def test_lyrics_fold_into_the_prompt_and_name_the_file(tmp_path):
    f = tmp_path / "lyrics.txt"
    f.write_text("# Terraform My Heart\n\nYou terraform my heart\nheart of stone, heart of fire\nstone by stone\n")
    song = read_lyrics(f)
    assert song.title == "Terraform My Heart"
    assert song.themes() == ["heart", "stone", "terraform"]
    assert fold_lyrics("jazz ballad.", song) == 'jazz ballad, with vocals, song titled "Terraform My Heart", themes: heart, stone, terraform'
    assert slugify(song.title) == "terraform-my-heart"
    assert slugify("../../etc/passwd") == "etc-passwd" and slugify("!!!") == "output"
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(MgenError, match="empty"):
        read_lyrics(tmp_path / "empty.txt")


def test_chroma_finds_the_pitch_class():
    from musicgen_cli.engine.melody import chroma

    rate = 32000
    t = np.arange(rate * 3) / rate
    a440 = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    feats = chroma(a440, rate)
    assert feats.shape == (1, 3 * rate // 4096 + 1, 12)
    assert (feats.sum(-1) == 1).all()  # one-hot per frame
    assert (feats[0].argmax(-1) == 9).all()  # A, with C at index 0
    long = np.zeros((2, rate * 40), np.float32)
    assert chroma(long, rate).shape[1] == 30 * rate // 4096 + 1  # cut to the 30 s window


def test_chunked_codec_decode_matches_the_whole_clip(tiny_models):
    import torch

    from musicgen_cli.arch import build_config, model_class
    from musicgen_cli.engine import codec

    model = model_class(build_config("tiny", "stereo")).from_pretrained(tiny_models["stereo"])
    codes = torch.randint(0, 64, (2, 8, 250))  # 5 s
    whole = codec.decode(model, codes)
    chunked = codec.decode(model, codes, chunk_s=1.5)
    assert whole.shape == chunked.shape == (2, 2, 5 * 32000)
    # Away from the chunk edges the overlap makes the chunks agree with the whole decode.
    middle = slice(32000, 2 * 32000)
    assert torch.allclose(whole[..., middle], chunked[..., middle], atol=5e-2)
