"""One run at a time in an output folder: a lock file naming its holder (pid, host).

Two batches writing one `--out-dir` would fold each other's manifests away. The lock is made
with O_EXCL, so exactly one run gets it; a lock whose holder died on this host (a killed run)
is taken over, and one held from another host is reported with its host to check by hand.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import psutil

from musicgen_cli.errors import Locked

LOCK_NAME = ".mgen-lock"


def holder(folder: Path) -> dict | None:
    """The live holder of `folder`'s lock, or None when it is free (or held by a dead run here)."""
    try:
        info = json.loads((Path(folder) / LOCK_NAME).read_text())
        pid, host = int(info["pid"]), str(info["host"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a torn lock: its writer died while writing it
    if host == socket.gethostname() and (pid == os.getpid() or not psutil.pid_exists(pid)):
        return None if pid != os.getpid() else info
    return info


def check_unlocked(folder: Path) -> None:
    info = holder(folder)
    if info is not None and info["pid"] != os.getpid():
        raise Locked(Path(folder), info["pid"], info["host"], Path(folder) / LOCK_NAME)


class FolderLock:
    """Held from `acquire()` until `release()`; a context manager as well."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False

    def acquire(self) -> FolderLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                check_unlocked(self.folder)
                self.path.unlink(missing_ok=True)  # a dead run's lock (or a torn one): take it over
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        check_unlocked(self.folder)
        raise Locked(self.folder, -1, "unknown", self.path)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
