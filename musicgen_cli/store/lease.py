"""Leases on model folders: a generation holds a shared lock while its model is loaded, and
`mgen models rm` / `prune` take the exclusive lock, so they never pull a model from under a run.

POSIX `flock` locks vanish with the process that held them, so a crashed run never leaves a
model locked. Where `fcntl` does not exist (Windows) leases are not taken and rm does not wait.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LEASE_NAME = ".mgen-in-use"


class Lease:
    """An open lock file; the lock lasts until `release()` or until the object is collected."""

    def __init__(self, fd: int | None):
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _lock(path: Path, exclusive: bool, wait: bool) -> Lease | None:
    """A lease on `path`, or None when another process holds a conflicting lock (and not `wait`)."""
    if fcntl is None:
        return Lease(None)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only cache: nothing can remove the model either
        return Lease(None)
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        os.close(fd)
        return None
    return Lease(fd)


def hold_model(folder: Path) -> Lease:
    """The shared lease a loaded model keeps; any number of runs may hold one at once."""
    return _lock(Path(folder) / LEASE_NAME, exclusive=False, wait=True) or Lease(None)


def claim_model(folder: Path) -> Lease | None:
    """The exclusive lease removing a model needs; None while any run holds the model.

    A folder that does not exist has no holders, so it is claimed at once."""
    folder = Path(folder)
    if not folder.is_dir():
        return Lease(None)
    return _lock(folder / LEASE_NAME, exclusive=True, wait=False)


def claim_path(path: Path) -> Lease | None:
    """The exclusive lock on any lock file (a staging folder's), None while someone holds it."""
    return _lock(Path(path), exclusive=True, wait=False)


def is_held(path: Path) -> bool:
    """Whether some process holds a lock on the file `path` (a missing file is held by nobody)."""
    if fcntl is None or not Path(path).is_file():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def model_in_use(folder: Path) -> bool:
    return is_held(Path(folder) / LEASE_NAME)
