"""A clip and its sidecar written as one pair: readers see the old pair or the new one.

Both files are written in full under temporary names first (a full disk stops here and
leaves the old pair alone). A small journal beside them records the step; then the old
sidecar goes, the clip is moved into place, and the new sidecar follows. A failure in that
step puts the old pair back from hard links taken before it. A process killed in it leaves
its journal, and the next mgen writing into that folder finishes the pair (both files were
complete), or, killed before that step, deletes the temporaries. A reader therefore never
finds a new clip beside an old sidecar.

Temporary names carry a host tag and the writer's pid, so only leftovers of dead processes
on this host are touched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Callable

import psutil

TAG = "mgen-part-"
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]
_TOKEN = re.compile(rf"{TAG}([0-9a-f]{{4}})-(\d+)-([0-9a-f]+)")
_LOW_SPACE = 1024 * 1024


def _commit(tmp: Path, target: Path) -> None:
    """One rename of the commit step (a seam for fault-injection tests)."""
    os.replace(tmp, target)


def _write_text(path: Path, text: str) -> None:
    """Write a temporary file; created with 0666 so the umask decides its mode, as for any file."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _names(folder: Path, token: str, audio: Path, sidecar: Path) -> dict[str, Path]:
    return {
        "journal": folder / f".{token}.pair",
        "tmp_audio": folder / f".{token}{audio.suffix}",
        "tmp_sidecar": folder / f".{token}.json",
        "old_audio": folder / f".{token}.old{audio.suffix}",
        "old_sidecar": folder / f".{token}.old.json",
    }


def _link_or_skip(src: Path, dst: Path) -> None:
    if src.exists():
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def write_pair(audio: Path, sidecar: Path, write_audio: Callable[[Path], None], sidecar_text: str | Callable[[], str]) -> None:
    """Write `audio` (by calling `write_audio(temporary path)`) and `sidecar` as one pair; a callable
    `sidecar_text` is asked after the audio is written (so the sidecar can describe the file)."""
    folder = audio.parent
    folder.mkdir(parents=True, exist_ok=True)
    recover_leftovers(folder)
    token = f"{TAG}{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"
    n = _names(folder, token, audio, sidecar)
    state = {"audio": audio.name, "sidecar": sidecar.name, "step": "writing"}
    try:
        _write_text(n["journal"], json.dumps(state))
        try:
            write_audio(n["tmp_audio"])
        except RuntimeError as exc:  # libsndfile says "System error." for a full disk: find out
            if shutil.disk_usage(folder).free < _LOW_SPACE:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(audio)) from exc
            raise
        except OSError as exc:  # name the file the user asked for, not our temporary
            raise type(exc)(exc.errno, exc.strerror, str(audio)) from exc
        try:
            _write_text(n["tmp_sidecar"], sidecar_text() if callable(sidecar_text) else sidecar_text)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, str(sidecar)) from exc
        _link_or_skip(audio, n["old_audio"])
        _link_or_skip(sidecar, n["old_sidecar"])
        n["journal"].write_text(json.dumps({**state, "step": "committing"}))
    except BaseException:
        _remove(n.values())
        raise
    try:
        sidecar.unlink(missing_ok=True)  # from here until the end there is no sidecar, never an old one
        _commit(n["tmp_audio"], audio)
        _commit(n["tmp_sidecar"], sidecar)
    except BaseException:
        _restore(n, audio, sidecar)
        raise
    _remove(n.values())


def _restore(n: dict[str, Path], audio: Path, sidecar: Path) -> None:
    """Put the old pair back (or no pair, where there was none) after a failed commit."""
    for old, target in ((n["old_audio"], audio), (n["old_sidecar"], sidecar)):
        if old.exists():
            os.replace(old, target)
        elif not n["tmp_audio" if target is audio else "tmp_sidecar"].exists():
            target.unlink(missing_ok=True)  # the new file had moved in where no old one was
    _remove(n.values())


def _remove(paths) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def recover_leftovers(folder: Path) -> list[str]:
    """Finish or remove what killed writers (dead pids on this host) left in `folder`; returns what was done."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    tokens: dict[str, list[Path]] = {}
    for path in folder.glob(f"*{TAG}*"):
        found = _TOKEN.search(path.name)
        if found and found.group(1) == _HOST and not psutil.pid_exists(int(found.group(2))):
            tokens.setdefault(found.group(0), []).append(path)
    done = []
    for token in tokens:
        journal = folder / f".{token}.pair"
        try:
            state = json.loads(journal.read_text())
        except (OSError, ValueError):
            state = {}
        if state.get("step") == "committing":
            audio, sidecar = folder / state["audio"], folder / state["sidecar"]
            n = _names(folder, token, audio, sidecar)
            if n["tmp_audio"].exists():
                os.replace(n["tmp_audio"], audio)
            if n["tmp_sidecar"].exists():
                os.replace(n["tmp_sidecar"], sidecar)
            done.append(f"finished {audio.name} + {sidecar.name}")
        _remove(p for p in folder.glob(f"*{token}*"))
        done.append(f"removed leftovers of {token}")
    return done
