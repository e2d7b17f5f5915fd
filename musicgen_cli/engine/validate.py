"""One validator for a job, run before any planning, loading or generating.

`GenerateSettings.validate` calls `check_settings`, so `generate`, `batch` (every line),
`test-suite` and the Python API refuse the same things in the same words. Errors name the
setting (`ValidationError.setting`); the CLI turns that into its flag.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

from musicgen_cli.errors import AudioInputError, ValidationError

MAX_SEED = 2**31 - 1
MAX_DURATION_S = 3600.0
ENGINES = ("fast", "reference")
DECODERS = ("encodec", "mbd")  # codes to sound: EnCodec's decoder, or MultiBand Diffusion (engine/mbd.py)
MIN_AUDIO_RATE = 8000
MAX_NUM_SAMPLES = 256  # clips in one batched pass; each costs its own KV cache and audio, and batch makes more
MAX_INPUT_AUDIO_S = MAX_DURATION_S  # a continuation is encoded and written whole: no longer than a clip may be
_SCAN_BLOCK = 1 << 16  # frames per block when scanning input audio for NaN and infinity


def _number(setting: str, value, *, integer: bool = False) -> float:
    """`value` as a finite number (an integer when asked); bools are not numbers."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValidationError(setting, f"must be {'an integer' if integer else 'a number'}, not {value!r}")
    if not math.isfinite(value):
        raise ValidationError(setting, f"must be a finite number, not {value}", "give an ordinary number")
    return value


def check_seed(seed, setting: str = "seed") -> None:
    if seed is None:
        return
    _number(setting, seed, integer=True)
    if not 0 <= seed <= MAX_SEED:
        raise ValidationError(setting, f"{seed} is outside 0..{MAX_SEED}", f"give a seed from 0 to {MAX_SEED}")


def check_decoder(name: str) -> None:
    """A decoder mgen has: EnCodec's, or MultiBand Diffusion."""
    if name not in DECODERS:
        raise ValidationError("decoder", f"{name!r} is not a decoder", f"use one of {', '.join(DECODERS)}")


def check_settings(s, max_window_s: float = math.inf) -> None:
    """Every number of a GenerateSettings in range, and its input files usable as audio."""
    duration = _number("duration", s.duration)
    if not 0 < duration <= MAX_DURATION_S:
        raise ValidationError("duration", f"{duration:g} s is out of range", f"give more than 0 and at most {MAX_DURATION_S:.0f} seconds")
    if _number("num_samples", s.num_samples, integer=True) < 1:
        raise ValidationError("num_samples", f"{s.num_samples} is not a sample count", "give 1 or more")
    if s.num_samples > MAX_NUM_SAMPLES:
        raise ValidationError("num_samples", f"{s.num_samples} is more than the {MAX_NUM_SAMPLES} clips one pass makes",
                              f"give at most {MAX_NUM_SAMPLES}, or use mgen batch for more")
    check_seed(s.seed)
    temperature = _number("temperature", s.temperature)
    if temperature <= 0 and not s.greedy:
        raise ValidationError("temperature", f"{temperature:g} must be above 0", "give a temperature like 1.0, or decode greedily")
    if temperature < 0:
        raise ValidationError("temperature", f"{temperature:g} must not be negative", "give a temperature like 1.0")
    if _number("top_k", s.top_k, integer=True) < 0:
        raise ValidationError("top_k", f"{s.top_k} must be 0 or more", "give 0 (off) or a count like 250")
    if not 0 <= _number("top_p", s.top_p) <= 1:
        raise ValidationError("top_p", f"{s.top_p:g} must be between 0 and 1", "give 0 (off) or a fraction like 0.9")
    if _number("guidance", s.guidance) < 0:
        raise ValidationError("guidance", f"{s.guidance:g} must be 0 or more", "give 1 (off) or a scale like 3")
    window = _number("window_s", s.window_s)
    if not window > 0:
        raise ValidationError("window_s", f"{window:g} s is not a window length", "give a window of more than 0 seconds, e.g. 30")
    if window > max_window_s:
        raise ValidationError("window_s", f"{window:g} s is longer than this model's {max_window_s:.0f} s", f"give a window up to {max_window_s:.0f} s")
    context = _number("context_s", s.context_s)
    if not 0 <= context < window:
        raise ValidationError("context_s", f"{context:g} s must be at least 0 and shorter than the {window:g} s window", "lower the context or raise the window")
    if s.engine not in ENGINES:
        raise ValidationError("engine", f"{s.engine!r} is not an engine", f"use one of {', '.join(ENGINES)}")
    check_decoder(s.decoder)
    if s.continuation is not None:
        check_audio_input(s.continuation, "continuation", max_seconds=MAX_INPUT_AUDIO_S)
    if s.melody is not None:
        check_audio_input(s.melody, "melody", span_s=duration)


def check_audio_input(path: Path | str, setting: str, *, max_seconds: float | None = None, span_s: float | None = None) -> None:
    """The file exists, can be opened, and decodes as audio of a usable rate and length, no
    longer than `max_seconds`, with finite samples in the `span_s` seconds that will be read."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioInputError(setting, f"file {path} does not exist", "check the path")
    if path.is_dir():
        raise AudioInputError(setting, f"file {path} is a folder", "give an audio file")
    with open(path, "rb"):  # PermissionError (EACCES) here names the file; the CLI words it
        pass
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile reports every decode failure as one RuntimeError subclass
        reason = str(exc).rsplit(":", 1)[-1].strip() or type(exc).__name__
        raise AudioInputError(setting, f"file {path} is not audio mgen can decode ({reason})", "convert it to WAV or FLAC") from None
    if info.frames <= 0:
        raise AudioInputError(setting, f"file {path} is empty", "give a file with at least a fraction of a second of sound")
    if info.samplerate < MIN_AUDIO_RATE:
        raise AudioInputError(setting, f"file {path} has a sample rate of {info.samplerate} Hz", "use audio at 8 kHz or more")
    if max_seconds is not None and info.frames > max_seconds * info.samplerate:
        raise AudioInputError(setting, f"file {path} is {info.frames / info.samplerate:.0f} s long, more than the {max_seconds:.0f} s mgen reads",
                              f"cut it to at most {max_seconds:.0f} s")
    if info.subtype in ("FLOAT", "DOUBLE"):  # only floating-point files can hold NaN or infinity
        frames = info.frames if span_s is None else min(info.frames, math.ceil(span_s * info.samplerate))
        check_finite_file(path, setting, frames)


def check_finite_file(path: Path, setting: str, frames: int) -> None:
    """The first `frames` frames of `path` are finite, read block by block (never the whole file at once)."""
    import numpy as np
    import soundfile as sf

    done = 0
    with sf.SoundFile(str(path)) as handle:
        while done < frames:
            block = handle.read(min(_SCAN_BLOCK, frames - done), dtype="float32", always_2d=True)
            if not len(block):
                return
            bad = ~np.isfinite(block).all(axis=1)
            if bad.any():
                at = (done + int(np.argmax(bad))) / handle.samplerate
                raise AudioInputError(setting, f"file {path} holds a sample that is not a finite number (NaN or infinity) at {at:.3f} s",
                                      "give audio of ordinary samples (re-export it)")
            done += len(block)


def check_finite(wave, setting: str) -> None:
    """Audio handed over as an array has finite samples."""
    import numpy as np

    if not np.isfinite(np.asarray(wave, dtype=np.float32)).all():
        raise AudioInputError(setting, "audio holds samples that are not finite numbers (NaN or infinity)", "pass ordinary samples")


def check_threads(num_threads: int | None, cpu_util_target: float | None = None) -> None:
    if num_threads is not None and _number("num_threads", num_threads, integer=True) < 1:
        raise ValidationError("num_threads", f"{num_threads} is not a thread count", "give 1 or more")
    if cpu_util_target is not None and not 0 < _number("cpu_util_target", cpu_util_target) <= 1:
        raise ValidationError("cpu_util_target", f"{cpu_util_target:g} is outside (0, 1]", "give a fraction like 0.75")


def name_max(folder: Path) -> int:
    """The longest file name (in bytes) the file system holding `folder` takes."""
    try:
        return os.pathconf(existing_ancestor(folder), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_name_lengths(path: Path, setting: str, spare: int = 0) -> None:
    """Every part of `path` fits the file system's NAME_MAX, with `spare` bytes left for suffixes."""
    limit = name_max(Path(path).parent)
    for part in Path(path).parts:
        if len(part.encode()) + spare > limit:
            raise ValidationError(
                setting, f"name {part[:40]}... is too long: {len(part.encode())} bytes, this file system takes {limit - spare}",
                "use a shorter name",
            )


def check_writable_folder(folder: Path) -> None:
    """`folder` (or the nearest part of it that exists, where it would be made) takes new files.

    Raises the OSError the file system gives (EROFS, EACCES, ENOTDIR...) with the folder named.
    """
    folder = Path(folder)
    base = existing_ancestor(folder)
    if not base.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(base))
    probe = base / f".mgen-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(base)) from None
    os.close(fd)
    probe.unlink(missing_ok=True)
