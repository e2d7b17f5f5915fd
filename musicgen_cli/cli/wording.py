"""Errors in words: one line `error: what — fix` for every error a user can cause.

The library raises typed errors that carry data (the setting, the path, the lock holder);
this table turns each type into the command line's words, with its flag names. Anything
not in the table is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import json
import signal
import sys
from typing import Callable

from musicgen_cli.errors import (
    Interrupted,
    MgenError,
    NonFiniteLogits,
    OutputExists,
    Terminated,
    ValidationError,
)

# A setting's name in the library -> how the command line spells it.
FLAGS = {
    "duration": "--duration",
    "num_samples": "--num-samples",
    "seed": "--seed",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "guidance": "--guidance",
    "greedy": "--greedy",
    "window_s": "--window",
    "context_s": "--context",
    "engine": "--engine",
    "continuation": "--continue",
    "melody": "--melody",
    "num_threads": "--num-threads",
    "cpu_util_target": "--cpu-util-target",
    "normalize": "--normalize",
    "subtype": "--subtype",
    "format": "--format",
    "out": "--out",
    "out_dir": "--out-dir",
    "cache_dir": "the model cache (--cache-dir or MGEN_CACHE_DIR)",
    "max_batch": "--max-batch",
    "processes": "--processes",
}

_WHERE = "write somewhere else (--out / --out-dir / --cache-dir)"
# errno -> (what happened, the fix); the path the OS named goes in front.
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space, or " + _WHERE),
    errno.EDQUOT: ("disk quota exceeded", "free some space, or " + _WHERE),
    errno.EROFS: ("is on a read-only file system", _WHERE),
    errno.EACCES: ("permission denied", "check its permissions, or " + _WHERE),
    errno.EPERM: ("operation not permitted", "check its permissions, or " + _WHERE),
    errno.ENAMETOOLONG: ("name too long for the file system", "use a shorter name"),
    errno.ENOTDIR: ("a part of this path is a file, not a folder", "fix the path"),
    errno.EISDIR: ("is a folder, where a file was expected", "give a file name"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EEXIST: ("already exists", "choose another name"),
    errno.EIO: ("input/output error from the device", "check the disk (and its cable or mount)"),
}


def _flagged(exc: ValidationError) -> str:
    return f"{FLAGS.get(exc.setting, exc.setting)} {exc.problem}"


def _mgen(exc: MgenError) -> tuple[str, str | None, int]:
    if isinstance(exc, ValidationError):
        return _flagged(exc), exc.fix, exc.exit_code
    if isinstance(exc, OutputExists) and exc.overwritable:
        return exc.message, "pass --overwrite to replace it, or choose another name", exc.exit_code
    return exc.message, exc.fix, exc.exit_code


def _non_finite(exc: NonFiniteLogits) -> tuple[str, str | None, int]:
    if exc.wider is None:
        return exc.message, exc.fix, exc.exit_code
    flags = " or ".join(f"--dtype {d}" for d in ("bfloat16", "float32") if d in exc.wider)
    return exc.message, f"run it again with {flags}", exc.exit_code


def _out_of_memory(exc: Exception) -> tuple[str, str | None, int]:
    # torch's message is several lines of allocator statistics; its first line says how much.
    first = (str(exc).splitlines() or ["out of memory"])[0].rstrip(".")
    return (f"the GPU ran out of memory ({first})",
            "lower --max-vram (or --duration, --num-samples), or use a smaller model (--size small)", 1)


def _os(exc: OSError) -> tuple[str, str | None, int]:
    what, fix = _OS_ERRORS.get(exc.errno, ((exc.strerror or str(exc)).splitlines()[0], "MGEN_DEBUG=1 shows where it happened"))
    where = exc.filename or ""
    if not where:
        return what, fix, 1
    return (f"{where} {what}" if what.startswith("is ") else f"{where}: {what}"), fix, 1


def _soundfile(exc: Exception) -> tuple[str, str | None, int]:
    detail = getattr(exc, "error_string", None) or str(exc)
    return (
        f"an audio file could not be read or written (libsndfile: {detail})",
        "check that the disk has space and the folder is writable; for inputs, give WAV or FLAC",
        1,
    )


def _safetensors(exc: Exception) -> tuple[str, str | None, int]:
    return f"a weight file cannot be read ({exc})", "download or import the model again (mgen models lists them)", 1


def _json(exc: json.JSONDecodeError) -> tuple[str, str | None, int]:
    return f"a JSON file is damaged ({exc.msg} at line {exc.lineno} column {exc.colno})", "MGEN_DEBUG=1 names the file; fix or delete it", 1


def _interrupted(exc: BaseException) -> tuple[str, str | None, int]:
    return "interrupted", "run the same command again; finished files are kept", Interrupted.exit_code


def _terminated(exc: Terminated) -> tuple[str, str | None, int]:
    return f"stopped by {signal.Signals(exc.signum).name}", "run the same command again; finished files are kept", 128 + exc.signum


def _usage(exc: Exception) -> tuple[str, str | None, int] | None:
    if not hasattr(exc, "format_message"):
        return None
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "mgen"
    return exc.format_message(), f"see `{command} --help`", getattr(exc, "exit_code", 2)


def _table() -> list[tuple[type, Callable]]:
    """Most specific first; optional libraries only when they are installed."""
    import typer

    table: list[tuple[type, Callable]] = [(NonFiniteLogits, _non_finite), (MgenError, _mgen)]
    torch = sys.modules.get("torch")  # an error raised before torch was imported is not torch's
    if torch is not None:
        table.append((torch.OutOfMemoryError, _out_of_memory))
    try:
        from soundfile import LibsndfileError

        table.append((LibsndfileError, _soundfile))
    except ImportError:
        pass
    try:
        from safetensors import SafetensorError

        table.append((SafetensorError, _safetensors))
    except ImportError:
        pass
    table += [
        (json.JSONDecodeError, _json),
        (OSError, _os),
        (Terminated, _terminated),
        (KeyboardInterrupt, _interrupted),
        (typer.Abort, _interrupted),  # the CLI framework's name for Ctrl-C at a prompt
        (typer.TyperException, _usage),
    ]
    return table


def word(exc: BaseException) -> tuple[str, int] | None:
    """`error: ... — fix` and the exit code, or None for an error that is a bug."""
    for kind, words in _table():
        if isinstance(exc, kind):
            worded = words(exc)
            if worded is None:
                return None
            message, fix, code = worded
            return (f"error: {message} — {fix}" if fix else f"error: {message}"), code
    return None
