"""Levels, formats and fades of written audio: audiocraft's audio_write semantics, measured."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from musicgen_cli.engine import audio
from musicgen_cli.engine.audio import AudioOptions
from musicgen_cli.errors import MgenError

RATE = 32000


def music_like(seconds: float = 3.0, channels: int = 2, level: float = 0.3) -> np.ndarray:
    """Tones plus noise with a slow envelope: something with a loudness and a crest factor."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(1)
    rows = [level * (np.sin(2 * np.pi * (220 + 110 * c) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
                     + 0.2 * rng.standard_normal(t.size)) for c in range(channels)]
    return np.asarray(rows, dtype=np.float32)


def audiocraft_levels(wav: np.ndarray, strategy: str, normalize: bool = True, peak_clip_headroom_db: float = 1,
                      rms_headroom_db: float = 18, loudness_headroom_db: float = 14, loudness_compressor: bool = False):
    """audiocraft/data/audio_utils.py `normalize_audio` as documented, in numpy (torchaudio's
    BS.1770 Loudness transform stands in as pyloudnorm's meter)."""
    scale_peak = 10 ** (-peak_clip_headroom_db / 20)
    scale_rms = 10 ** (-rms_headroom_db / 20)
    if strategy == "peak":
        rescaling = scale_peak / np.abs(wav).max()
        return wav * rescaling if normalize or rescaling < 1 else wav
    if strategy == "clip":
        return np.clip(wav, -scale_peak, scale_peak)
    if strategy == "rms":
        rescaling = scale_rms / np.sqrt(np.mean(wav.mean(axis=0) ** 2))
        out = wav * rescaling if normalize or rescaling < 1 else wav
        return np.clip(out, -1, 1)
    assert strategy == "loudness"
    if np.sqrt(np.mean(wav**2)) < 2e-3:
        return wav
    measured = pyloudnorm.Meter(RATE).integrated_loudness(wav.T.astype(np.float64))
    out = wav * 10 ** ((-loudness_headroom_db - measured) / 20)
    return np.clip(np.tanh(out) if loudness_compressor else out, -1, 1)


@pytest.mark.parametrize("strategy", ["peak", "rms", "clip", "loudness"])
@pytest.mark.parametrize("normalize", [True, False])
def test_levels_match_audiocraft_formula(strategy, normalize):
    for level in (0.05, 1.4):  # quiet (scaled up unless normalize=False) and over full scale
        wav = music_like(level=level)
        ours = audio.normalize_audio(wav, RATE, AudioOptions(normalize=strategy), normalize=normalize)
        theirs = audiocraft_levels(wav, strategy, normalize)
        assert np.allclose(ours, theirs, atol=1e-5), (strategy, normalize, level)


def test_defaults_are_audio_writes_defaults():
    options = AudioOptions()
    assert (options.normalize, options.peak_headroom_db, options.rms_headroom_db, options.loudness_headroom_db,
            options.loudness_compressor, options.mp3_bitrate) == ("peak", 1, 18, 14, False, 320)
    wav = music_like()
    assert np.allclose(audio.render(wav, RATE)[0], audiocraft_levels(wav, "peak"), atol=1e-6)


def test_peak_headroom_is_exact(tmp_path):
    wav = music_like(level=0.2)
    for headroom in (1.0, 3.0, 0.0):
        out = audio.normalize_audio(wav, RATE, AudioOptions(peak_headroom_db=headroom))
        assert math.isclose(20 * math.log10(np.abs(out).max()), -headroom, abs_tol=1e-5)
    record = audio.save(tmp_path / "p.wav", wav, RATE, AudioOptions(subtype="FLOAT"))
    assert math.isclose(record["measured"]["sample_peak_dbfs"], -1.0, abs_tol=1e-3)
    assert record["measured"]["true_peak_dbtp"] >= record["measured"]["sample_peak_dbfs"]


@pytest.mark.parametrize("target", [14.0, 23.0])
@pytest.mark.parametrize("channels", [1, 2])
def test_loudness_lands_on_target(tmp_path, target, channels):
    wav = music_like(channels=channels, level=0.02)
    record = audio.save(tmp_path / "l.wav", wav, RATE, AudioOptions(normalize="loudness", loudness_headroom_db=target))
    written, rate = sf.read(tmp_path / "l.wav", always_2d=True)
    measured = pyloudnorm.Meter(rate).integrated_loudness(written)
    assert abs(measured + target) <= 0.5
    assert abs(record["measured"]["integrated_lufs"] + target) <= 0.5
    assert record["clipped_samples"] == 0


def test_loudness_compressor_soft_clips():
    wav = music_like(level=0.3)
    hard = audio.normalize_audio(wav, RATE, AudioOptions(normalize="loudness", loudness_headroom_db=1))
    soft = audio.normalize_audio(wav, RATE, AudioOptions(normalize="loudness", loudness_headroom_db=1, loudness_compressor=True))
    assert np.abs(hard).max() == 1.0 and np.abs(soft).max() < 1.0
    assert np.allclose(soft, np.tanh(hard / np.abs(hard).max() * np.abs(hard).max()), atol=0.5)  # same sign and shape


def test_none_clips_honestly(tmp_path):
    wav = np.array([[0.5, 1.5, -2.0, 0.25] * 8000], np.float32)
    pcm = audio.save(tmp_path / "n.wav", wav, RATE, AudioOptions(normalize="none"))
    assert pcm["clipped_samples"] == 16000
    assert sf.read(tmp_path / "n.wav")[0].max() <= 1.0
    floats = audio.save(tmp_path / "f.wav", wav, RATE, AudioOptions(normalize="none", subtype="FLOAT"))
    assert floats["clipped_samples"] == 0 and sf.read(tmp_path / "f.wav")[0].min() == -2.0


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("kbps", [320, 128])
def test_mp3_decodes_to_the_right_duration_channels_and_rate(tmp_path, channels, kbps):
    wav = music_like(seconds=4.0, channels=channels)
    record = audio.save(tmp_path / "m.mp3", wav, RATE, AudioOptions(mp3_bitrate=kbps))
    info = sf.info(tmp_path / "m.mp3")
    assert info.format == "MP3" and info.channels == channels and info.samplerate == RATE
    assert abs(info.frames - wav.shape[1]) <= 1152  # at most one MPEG frame of padding
    bitrate = (tmp_path / "m.mp3").stat().st_size * 8 / 4.0 / 1000
    assert abs(bitrate - kbps) / kbps < 0.1
    assert record["mp3_bitrate"] == kbps and record["measured"]["format"] == "MP3"


def test_fades_shape_the_envelope():
    wav = np.ones((2, RATE * 2), np.float32)
    out = audio.fade(wav, RATE, fade_in_s=0.5, fade_out_s=0.25)
    n_in, n_out = RATE // 2, RATE // 4
    assert out[0, 0] < 1e-4 and out[0, -1] < 1e-4
    assert np.all(np.diff(out[0, :n_in]) >= 0) and np.all(np.diff(out[0, -n_out:]) <= 0)
    assert math.isclose(out[0, n_in // 2], 0.5, abs_tol=1e-3)  # raised cosine: half way is half gain
    assert np.array_equal(out[:, n_in:-n_out], wav[:, n_in:-n_out])
    assert np.array_equal(out[0], out[1]) and np.array_equal(wav, np.ones_like(wav))  # input untouched
    short = audio.fade(np.ones((1, 100), np.float32), RATE, 10.0, 0.0)  # a ramp longer than the clip is cut
    assert short.shape == (1, 100) and short[0, 0] < 1e-3 and short[0, -1] > 0.99


def test_format_choice_and_option_checks():
    assert audio.choose_format("a/song.mp3", None) == "mp3"
    assert audio.choose_format(None, "FLAC") == "flac"
    assert audio.choose_format("song", None) == "wav"
    with pytest.raises(MgenError, match="contradicts the output name song.wav"):
        audio.choose_format("song.wav", "mp3")
    with pytest.raises(MgenError, match="unknown audio format"):
        audio.choose_format(None, "aiff")
    for bad in (AudioOptions(normalize="louder"), AudioOptions(mp3_bitrate=500), AudioOptions(format="flac", subtype="FLOAT"),
                AudioOptions(fade_in_s=-1), AudioOptions(peak_headroom_db=-2)):
        with pytest.raises(MgenError):
            bad.validate()


def test_true_peak_sees_between_samples():
    t = np.arange(RATE * 12) / RATE  # longer than one 10 s chunk of the streamed oversampler
    wave = np.sin(2 * np.pi * (RATE / 4) * t + np.pi / 4).astype(np.float32)[None]  # samples land at +-0.707
    assert math.isclose(audio.sample_peak(wave), math.sqrt(0.5), rel_tol=1e-6)
    assert abs(audio.true_peak(wave, RATE) - 1.0) < 0.02
