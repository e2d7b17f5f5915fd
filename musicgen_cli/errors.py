"""Errors a user can cause. The CLI prints them as one line and exits non-zero.

Library errors carry data (the setting, the path, the lock holder); the CLI words them, so a
library message never names a command-line flag that another front end (the Python API, a
batch file's keys) would spell differently.
"""

from __future__ import annotations

from pathlib import Path


class MgenError(Exception):
    """A problem the user can fix; `fix` says how (a command, a flag, a setting)."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}" if self.fix else self.message


class ValidationError(MgenError):
    """A setting out of range. `setting` is its name in GenerateSettings (or the job's options);
    the message reads `<setting> <problem>`, so a front end can put its own name for it in front."""

    def __init__(self, setting: str, problem: str, fix: str | None = None):
        super().__init__(f"{setting} {problem}", fix)
        self.setting = setting
        self.problem = problem


class ModelNotFound(MgenError):
    """A manifest key or repo id that names no known or cached model."""


class ModelDamaged(MgenError):
    """A cached model whose files cannot be read (truncated weights, a config that is not JSON).

    `repair` is the command that puts it right; the folder is no longer marked ready.
    """

    def __init__(self, folder: Path, reason: str, repair: str):
        super().__init__(f"model files in {folder} are damaged ({reason})", f"repair them: {repair}")
        self.folder = Path(folder)
        self.reason = reason
        self.repair = repair


class DownloadError(MgenError):
    """The hub could not deliver a file (offline, 404, gated, disk full, bad checksum)."""


class PlanError(MgenError):
    """The job cannot fit the machine under any placement."""


class NonFiniteLogits(MgenError):
    """The decoder's logits became NaN or infinite (a half-precision overflow): no token drawn
    from them means anything. `step` is the decode step of the window, counted from 1."""

    def __init__(self, step: int, dtype: str):
        # float32 does not overflow where half precision does: NaN there means damaged weights.
        wider = {"bfloat16": "float32", "float16": "bfloat16 (on Ampere or newer) or float32"}.get(dtype)
        super().__init__(f"the decoder's logits became NaN or infinite at decode step {step} in {dtype}",
                         f"generate in {wider}" if wider else "verify the model's files (mgen models verify)")
        self.step = step
        self.dtype = dtype
        self.wider = wider


class AudioError(MgenError):
    """An input audio file that cannot be used."""


class AudioInputError(ValidationError, AudioError):
    """An input audio file (a setting's value) that is missing, unreadable or not audio."""


class OutputExists(MgenError):
    """An output that is already on disk; nothing is replaced unless overwriting is allowed."""

    def __init__(self, path: Path, detail: str = "already exists", *, overwritable: bool = True):
        super().__init__(f"{path} {detail}", "choose another name" + (", or allow overwriting" if overwritable else ""))
        self.path = Path(path)
        self.overwritable = overwritable


class Locked(MgenError):
    """A folder another running mgen is using."""

    def __init__(self, folder: Path, pid: int, host: str, lock: Path):
        super().__init__(
            f"{folder} is in use by another mgen run (pid {pid} on {host})",
            f"wait for it to finish; if it is gone, delete {lock}",
        )
        self.folder, self.pid, self.host, self.lock = Path(folder), pid, host, Path(lock)


class Interrupted(MgenError):
    """The user pressed Ctrl-C; nothing half-written is left behind."""

    exit_code = 130


class Terminated(BaseException):
    """SIGTERM or SIGHUP. Every write unwinds as for Ctrl-C (cleanup is in `finally` and
    `except BaseException`), but it is no KeyboardInterrupt: it ends the command even where
    Ctrl-C only stops the work in progress (a studio take), and no framework swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
