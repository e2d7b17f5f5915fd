"""Audio files in and out: read, resample, remix channels, normalise, write atomically.

Arrays are float32 shaped [channels, samples] in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicgen_cli.errors import AudioError
from musicgen_cli.store.cache import atomic_path

FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}
DEFAULT_SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS"}
NORMALIZE_MODES = ("peak", "loudness", "none")
PEAK_CEILING = 0.98  # ~ -0.2 dBFS: leaves headroom for lossy encoders' overshoot
LOUDNESS_TARGET_DBFS = -16.0  # RMS target, near streaming platforms' -14..-16 LUFS


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Read any format libsndfile knows; unusable files raise AudioError with the reason."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist", "check the path")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports every decode failure as a RuntimeError subclass
        raise AudioError(f"cannot read audio file {path}: {exc}", "use a WAV, FLAC or OGG file") from None
    if data.size == 0:
        raise AudioError(f"audio file {path} is empty", "give a file with at least a fraction of a second of sound")
    if rate < 8000:
        raise AudioError(f"audio file {path} has a sample rate of {rate} Hz", "use audio at 8 kHz or more")
    return np.ascontiguousarray(data.T), int(rate)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by FFT (exact for periodic signals, fine for prompt audio)."""
    if rate_in == rate_out:
        return wave
    n_out = int(round(wave.shape[-1] * rate_out / rate_in))
    spectrum = np.fft.rfft(wave, axis=-1)
    out = np.fft.irfft(spectrum, n=n_out, axis=-1) * (n_out / wave.shape[-1])
    return out.astype(np.float32)


def match_channels(wave: np.ndarray, channels: int) -> np.ndarray:
    """Mix down to mono by averaging, or up by copying the mono signal to each channel."""
    if wave.shape[0] == channels:
        return wave
    mono = wave.mean(axis=0, keepdims=True)
    return np.repeat(mono, channels, axis=0) if channels > 1 else mono


def load_for_model(path: Path | str, rate: int, channels: int) -> np.ndarray:
    """Read a file and bring it to the model's sample rate and channel count."""
    wave, file_rate = read_audio(path)
    return match_channels(resample(wave, file_rate, rate), channels)


def normalize(wave: np.ndarray, mode: str) -> np.ndarray:
    """peak: scale to PEAK_CEILING; loudness: RMS to LOUDNESS_TARGET_DBFS, never past the ceiling."""
    if mode not in NORMALIZE_MODES:
        raise AudioError(f"unknown normalisation {mode!r}", f"use one of {', '.join(NORMALIZE_MODES)}")
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if mode == "none" or peak == 0.0:
        return wave
    if mode == "peak":
        gain = PEAK_CEILING / peak
    else:
        rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
        gain = min(10 ** (LOUDNESS_TARGET_DBFS / 20) / rms, PEAK_CEILING / peak)
    return (wave * gain).astype(np.float32)


def fade(wave: np.ndarray, sample_rate: int, fade_in_s: float = 0.0, fade_out_s: float = 0.0) -> np.ndarray:
    """Linear fade-in over the first and fade-out over the last seconds (a copy)."""
    out = np.array(wave, dtype=np.float32, copy=True)
    length = out.shape[-1]
    n_in, n_out = (min(length, round(s * sample_rate)) for s in (fade_in_s, fade_out_s))
    if n_in > 0:
        out[..., :n_in] *= np.linspace(0.0, 1.0, n_in, dtype=np.float32)
    if n_out > 0:
        out[..., length - n_out:] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)
    return out


def write_audio(path: Path | str, wave: np.ndarray, rate: int, subtype: str | None = None) -> Path:
    """Write atomically; the format comes from the suffix (.wav, .flac, .ogg)."""
    import soundfile as sf

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise AudioError(f"unsupported output format {path.suffix!r}", "use .wav, .flac or .ogg")
    subtype = subtype or DEFAULT_SUBTYPES[fmt]
    if not sf.check_format(FORMATS[fmt], subtype):
        raise AudioError(f"subtype {subtype} is not valid for {fmt}", f"see soundfile.available_subtypes('{FORMATS[fmt]}')")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(wave, -1.0, 1.0).T, rate, format=FORMATS[fmt], subtype=subtype)
    return path
