"""Audio files in and out: read, resample, remix channels, fade, level, write atomically, measure.

Arrays are float32 shaped [channels, samples], nominally in [-1, 1]. Levelling follows
audiocraft's `audio_write` (data/audio_utils.py `normalize_audio`) strategy for strategy, with
its defaults, so a clip written by mgen sits at the level the same waveform gets there:

  peak      scale the largest sample to -peak_headroom_db dBFS (1 dB by default)
  rms       scale the mono mix's RMS to -rms_headroom_db dBFS (18 dB), then clip at full scale
  loudness  scale to -loudness_headroom_db LUFS (ITU-R BS.1770-4, measured by pyloudnorm;
            -14 LUFS by default), optionally tanh-compressed, then clip at full scale
  clip      clip at -peak_headroom_db dBFS, no scaling
  none      no scaling; integer and lossy formats still clip at full scale (counted)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from musicgen_cli.errors import AudioError, MgenError, ValidationError
from musicgen_cli.store.cache import atomic_path


@dataclass(frozen=True)
class AudioFormat:
    sf_format: str  # libsndfile's container name
    subtypes: tuple[str, ...]  # the first is the default


# The one table of output formats: --format, --out suffixes, batch and audio_write read it.
FORMATS: dict[str, AudioFormat] = {
    "wav": AudioFormat("WAV", ("PCM_16", "PCM_24", "FLOAT")),
    "flac": AudioFormat("FLAC", ("PCM_16", "PCM_24")),
    "ogg": AudioFormat("OGG", ("VORBIS",)),
    "mp3": AudioFormat("MP3", ("MPEG_LAYER_III",)),  # libsndfile >= 1.1 encodes MP3 (LAME)
}
NORMALIZE_MODES = ("peak", "loudness", "rms", "clip", "none")
MP3_BITRATES = (40, 320)  # kb/s: libsndfile maps compression 0..1 linearly onto 320..32 (MPEG-1)
ENERGY_FLOOR = 2e-3  # audiocraft leaves near-silence (RMS below this) unscaled
LOUDNESS_BLOCK_S = 0.4  # BS.1770's gating block: shorter clips are measured looped
# Approximate Vorbis nominal bit rates at quality 0..10 (libvorbis' table), to honour a kb/s ask.
_VORBIS_KBPS = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500)


@dataclass(frozen=True)
class AudioOptions:
    """How a clip becomes a file. Defaults are audiocraft's `audio_write` defaults."""

    format: str | None = None  # None: from the file's suffix
    subtype: str | None = None  # None: the format's default (PCM_16 for wav/flac)
    mp3_bitrate: int = 320
    ogg_bitrate: int | None = None  # None: libsndfile's default quality
    normalize: str = "peak"
    peak_headroom_db: float = 1.0
    rms_headroom_db: float = 18.0
    loudness_headroom_db: float = 14.0  # target is minus this, in LUFS
    loudness_compressor: bool = False
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0

    def validate(self) -> AudioOptions:
        """Raise a one-line MgenError for anything that would fail at write time."""
        if self.normalize not in NORMALIZE_MODES:
            raise MgenError(f"unknown normalisation {self.normalize!r}", f"use --normalize {', '.join(NORMALIZE_MODES)}")
        if self.format is not None:
            fmt = format_spec(self.format)
            if self.subtype is not None and self.subtype.upper() not in fmt.subtypes:
                raise AudioError(f"subtype {self.subtype} is not offered for {self.format}",
                                f"use --subtype {' or '.join(fmt.subtypes)}")
            if self.format == "mp3":
                mp3_available()
        if not MP3_BITRATES[0] <= self.mp3_bitrate <= MP3_BITRATES[1]:
            raise MgenError(f"MP3 bit rate {self.mp3_bitrate} kb/s is out of range", "use --mp3-bitrate between 40 and 320")
        if self.ogg_bitrate is not None and not 45 <= self.ogg_bitrate <= 500:
            raise MgenError(f"Ogg bit rate {self.ogg_bitrate} kb/s is out of range", "use 45 to 500 kb/s")
        if min(self.peak_headroom_db, self.rms_headroom_db) < 0 or self.loudness_headroom_db <= 0:
            raise MgenError("headroom must be positive dB below full scale", "e.g. --peak-headroom-db 1")
        if self.fade_in_s < 0 or self.fade_out_s < 0:
            raise MgenError("fades cannot be negative", "use --fade-in/--fade-out in seconds, e.g. 2")
        return self

    @classmethod
    def from_record(cls, record: dict) -> AudioOptions:
        """The options a sidecar's "audio" record was written with."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    def for_path(self, path: Path) -> AudioOptions:
        """These options with the format (and subtype) settled for `path`."""
        fmt = self.format or Path(path).suffix.lstrip(".").lower()
        format_spec(fmt)
        return replace(self, format=fmt, subtype=(self.subtype or FORMATS[fmt].subtypes[0]).upper()).validate()


def format_spec(fmt: str) -> AudioFormat:
    if fmt not in FORMATS:
        raise AudioError(f"unknown audio format {fmt!r}", f"use one of {', '.join(FORMATS)} (as --format or the --out suffix)")
    return FORMATS[fmt]


def choose_format(out: Path | str | None, fmt: str | None) -> str:
    """--format, else the --out suffix, else wav; the two must agree, and a suffix that is no
    audio format is refused (an existing folder as --out has no suffix to read)."""
    suffix = Path(out).suffix.lstrip(".").lower() if out and not Path(out).is_dir() else ""
    if suffix and suffix not in FORMATS:
        raise ValidationError("out", f"{out} ends in .{suffix}, which is no audio format mgen writes",
                              f"end the name in {', '.join('.' + f for f in FORMATS)}")
    if fmt:
        fmt = fmt.lower()
        format_spec(fmt)
        if suffix and suffix != fmt:
            raise ValidationError("format", f"{fmt} contradicts the output name {out}", "drop one, or make them agree")
        return fmt
    return suffix or "wav"


def mp3_available() -> None:
    import soundfile as sf

    if "MP3" not in sf.available_formats():
        raise AudioError(f"this libsndfile ({sf.__libsndfile_version__}) cannot write MP3",
                         "upgrade soundfile (its wheels bundle libsndfile >= 1.1), or use --format flac")


# -- input ------------------------------------------------------------------------------
def read_audio(path: Path | str, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Read any format libsndfile knows (only its first `seconds` when given: the rest is never
    decoded); unusable files raise AudioError with the reason."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist", "check the path")
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = handle.samplerate
            frames = -1 if seconds is None else math.ceil(seconds * rate)
            data = handle.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports every decode failure as a RuntimeError subclass
        raise AudioError(f"cannot read audio file {path}: {exc}", "use a WAV, FLAC, OGG or MP3 file") from None
    if data.size == 0:
        raise AudioError(f"audio file {path} is empty", "give a file with at least a fraction of a second of sound")
    if rate < 8000:
        raise AudioError(f"audio file {path} has a sample rate of {rate} Hz", "use audio at 8 kHz or more")
    return np.ascontiguousarray(data.T), int(rate)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """soxr's high-quality band-limited resampler; [channels, samples] in and out."""
    import soxr

    if rate_in == rate_out:
        return wave
    out = soxr.resample(np.ascontiguousarray(wave.T, dtype=np.float32), rate_in, rate_out, quality="HQ")
    return np.ascontiguousarray(out.reshape(out.shape[0], -1).T)


def match_channels(wave: np.ndarray, channels: int) -> np.ndarray:
    """audiocraft's convert_audio_channels: average down to mono, copy mono up, else keep the first channels."""
    have = wave.shape[0]
    if have == channels:
        return wave
    if channels == 1:
        return wave.mean(axis=0, keepdims=True)
    if have == 1:
        return np.repeat(wave, channels, axis=0)
    if have > channels:
        return wave[:channels]
    raise AudioError(f"audio has {have} channels, the model wants {channels}", "give mono or stereo audio")


def load_for_model(path: Path | str, rate: int, channels: int, seconds: float | None = None) -> np.ndarray:
    """Read a file (its first `seconds` when given) and bring it to the model's sample rate and channel count."""
    wave, file_rate = read_audio(path, seconds)
    return match_channels(resample(wave, file_rate, rate), channels)


# -- shaping and levels -----------------------------------------------------------------
def fade(wav: np.ndarray, sample_rate: int, fade_in_s: float = 0.0, fade_out_s: float = 0.0) -> np.ndarray:
    """Raised-cosine fade in and out (each ramp cut to the clip's length); a new array."""
    out = np.array(wav, dtype=np.float32, copy=True)
    length = out.shape[-1]
    for seconds, at_end in ((fade_in_s, False), (fade_out_s, True)):
        n = min(length, int(round(seconds * sample_rate)))
        if n <= 0:
            continue
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        if at_end:
            out[..., length - n :] *= ramp[::-1]
        else:
            out[..., :n] *= ramp
    return out


def integrated_loudness(wave: np.ndarray, rate: int) -> float:
    """ITU-R BS.1770-4 integrated loudness in LUFS (-inf for silence)."""
    import pyloudnorm

    block = int(math.ceil(LOUDNESS_BLOCK_S * rate)) + 1
    data = np.asarray(wave, dtype=np.float64).T
    if data.shape[0] < block:  # loop a short clip to one gating block: its level, not its length
        data = np.tile(data, (int(math.ceil(block / data.shape[0])), 1))
    return float(pyloudnorm.Meter(rate).integrated_loudness(data))


def sample_peak(wave: np.ndarray) -> float:
    return float(np.abs(wave).max()) if wave.size else 0.0


def true_peak(wave: np.ndarray, rate: int) -> float:
    """BS.1770-4 Annex 2 true peak: the sample peak of the signal oversampled 4x (streamed in
    10 s chunks, so a long clip never holds four copies of itself)."""
    import soxr

    wave = np.asarray(wave, np.float32)
    stream = soxr.ResampleStream(rate, 4 * rate, wave.shape[0], dtype="float32", quality="HQ")
    peak, step, length = sample_peak(wave), 10 * rate, wave.shape[-1]
    for start in range(0, length, step):
        out = stream.resample_chunk(np.ascontiguousarray(wave[:, start : start + step].T), last=start + step >= length)
        peak = max(peak, sample_peak(out))
    return peak


def db(value: float) -> float | None:
    return round(20 * math.log10(value), 3) if value > 0 else None


def normalize_audio(wave: np.ndarray, sample_rate: int, options: AudioOptions = AudioOptions(), *,
                    normalize: bool = True) -> np.ndarray:
    """Level `wave` by `options.normalize` as audiocraft's `normalize_audio` does.

    normalize=False (audiocraft's flag) applies peak/rms scaling only when it turns the level down.
    """
    scaled = _scale(wave, sample_rate, options, normalize)
    return np.clip(scaled, -1.0, 1.0) if options.normalize in ("rms", "loudness") else scaled


def _scale(wave: np.ndarray, sample_rate: int, options: AudioOptions, normalize: bool) -> np.ndarray:
    """The levelling before rms/loudness clip at full scale (so clipping can be counted)."""
    strategy = options.normalize
    if strategy not in NORMALIZE_MODES:
        raise AudioError(f"unknown normalisation {strategy!r}", f"use one of {', '.join(NORMALIZE_MODES)}")
    wave = np.asarray(wave, dtype=np.float32)
    scale_peak = 10 ** (-options.peak_headroom_db / 20)
    if strategy == "none" or wave.size == 0:
        return wave
    if strategy == "clip":
        return np.clip(wave, -scale_peak, scale_peak)
    if strategy == "peak":
        peak = sample_peak(wave)
        gain = scale_peak / peak if peak > 0 else 1.0
        return (wave * gain).astype(np.float32) if normalize or gain < 1 else wave
    if strategy == "rms":
        rms = float(np.sqrt(np.mean(np.square(wave.mean(axis=0), dtype=np.float64))))
        gain = 10 ** (-options.rms_headroom_db / 20) / rms if rms > 0 else 1.0
        return (wave * gain).astype(np.float32) if normalize or gain < 1 else wave
    if float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) < ENERGY_FLOOR:
        return wave
    measured = integrated_loudness(wave, sample_rate)
    if not math.isfinite(measured):
        return wave
    out = wave * 10 ** ((-options.loudness_headroom_db - measured) / 20)
    return (np.tanh(out) if options.loudness_compressor else out).astype(np.float32)


def render(wave: np.ndarray, sample_rate: int, options: AudioOptions = AudioOptions(), *,
           normalize: bool = True) -> tuple[np.ndarray, int]:
    """Faded (first, so the level target holds with the fades) and levelled audio, and the
    number of samples clipped at full scale on the way (by rms/loudness, or by the file format)."""
    if options.fade_in_s or options.fade_out_s:
        wave = fade(wave, sample_rate, options.fade_in_s, options.fade_out_s)
    scaled = _scale(wave, sample_rate, options, normalize)
    clips = options.normalize in ("rms", "loudness") or options.subtype != "FLOAT"
    clipped = int(np.count_nonzero(np.abs(scaled) > 1.0)) if clips else 0
    return (np.clip(scaled, -1.0, 1.0) if clips else scaled), clipped


# -- output -----------------------------------------------------------------------------
def _encoder_args(fmt: str, options: AudioOptions) -> dict:
    if fmt == "mp3":
        return {"compression_level": (320 - options.mp3_bitrate) / 288, "bitrate_mode": "CONSTANT"}
    if fmt == "ogg" and options.ogg_bitrate is not None:
        quality = float(np.interp(options.ogg_bitrate, _VORBIS_KBPS, np.arange(len(_VORBIS_KBPS)))) / 10
        return {"compression_level": 1.0 - quality}
    return {}


def write_audio(path: Path | str, wave: np.ndarray, rate: int, subtype: str | None = None,
                options: AudioOptions | None = None) -> Path:
    """Write atomically in the format of `options.format`, else of the suffix.

    Samples are clipped at full scale unless the file stores floats (integer PCM and the
    lossy encoders cannot hold more); `clipped_samples` counts what that cuts.
    """
    import soundfile as sf

    path = Path(path)
    options = (options or AudioOptions(subtype=subtype)).for_path(path)
    if subtype is not None:
        options = replace(options, subtype=subtype.upper()).validate()
    spec = FORMATS[options.format]
    if options.subtype not in spec.subtypes:
        raise AudioError(f"subtype {options.subtype} is not offered for {options.format}",
                         f"use {' or '.join(spec.subtypes)}")
    data = wave if options.subtype == "FLOAT" else np.clip(wave, -1.0, 1.0)
    if options.subtype == "PCM_16":
        # to the nearest step of 1/32768 (audiocraft's writer, torchaudio's conversion); libsndfile
        # scales by 32767, which reads back up to one step low
        data = np.clip(np.round(data * 32768.0), -32768, 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.ascontiguousarray(data.T), rate, format=spec.sf_format, subtype=options.subtype,
                 **_encoder_args(options.format, options))
    return path


def measure(path: Path | str) -> dict:
    """Levels of the file as written (decoded back, so lossy encoders' overshoot counts)."""
    import soundfile as sf

    wave, rate = read_audio(path)
    info = sf.info(str(path))
    loudness = integrated_loudness(wave, rate)
    return {
        "format": info.format,
        "subtype": info.subtype,
        "integrated_lufs": round(loudness, 3) if math.isfinite(loudness) else None,
        "sample_peak_dbfs": db(sample_peak(wave)),
        "true_peak_dbtp": db(true_peak(wave, rate)),
        "duration_s": info.frames / rate,
    }


def save(path: Path | str, wave: np.ndarray, rate: int, options: AudioOptions = AudioOptions(), *,
         normalize: bool = True) -> dict:
    """Fade, level, write and measure one clip; the record a sidecar keeps."""
    options = options.for_path(Path(path))
    leveled, clipped = render(wave, rate, options, normalize=normalize)
    write_audio(path, leveled, rate, options=options)
    return {**asdict(options), "clipped_samples": clipped, "measured": measure(path)}
