"""Where models live on disk, when a model folder counts as ready, and atomic writes.

A model folder is *ready* only once `.mgen-ready.json` exists in it; that marker is written
last (atomically) by a verified download, an import or the random-model builder, so an
interrupted job never leaves a folder that looks usable.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from musicgen_cli import config
from musicgen_cli.errors import MgenError, ValidationError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_DIR.parent
READY_MARKER = ".mgen-ready.json"


def cache_root(override: str | Path | None = None) -> Path:
    """--cache-dir, else MGEN_CACHE_DIR, else model-cache/ beside manifest.json."""
    chosen = override or config.cache_dir() or PROJECT_ROOT / "model-cache"
    root = Path(chosen).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ValidationError("cache_dir", f"{root} is a file, not a folder", "point it at a folder (or one that does not exist yet)")
    return root


def audiocraft_cache_dir() -> Path | None:
    value = config.audiocraft_cache_dir()
    return value.resolve() if value else None


def safe_child(root: Path, name: str) -> Path:
    """root/name, refusing names (from manifests, batch files) that would escape root.

    The *name* is judged, not where it leads: a model folder that is the user's own symlink to
    another disk is theirs to make, while `..`, absolute paths and odd characters are refused.
    """
    if not name or Path(name).is_absolute() or "\\" in name or "\x00" in name:
        raise MgenError(f"unsafe folder or file name {name!r}", "use a plain relative name")
    parts = Path(name).parts
    if any(part in {".", ".."} for part in parts) or name.startswith("./") or not parts:
        raise MgenError(f"name {name!r} escapes {root}", "use a plain relative name without '.' or '..'")
    return Path(root).resolve() / Path(*parts)


def is_ready(folder: Path) -> bool:
    return (Path(folder) / READY_MARKER).is_file()


def read_marker(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / READY_MARKER).read_text())
    except (OSError, ValueError):
        return {}


def mark_ready(folder: Path, info: dict) -> None:
    atomic_write_text(Path(folder) / READY_MARKER, json.dumps(info, indent=2, sort_keys=True))


def unmark_ready(folder: Path) -> None:
    (Path(folder) / READY_MARKER).unlink(missing_ok=True)


def folder_size(folder: Path) -> int:
    folder = Path(folder)
    if not folder.exists():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def current_umask() -> int:
    """The process umask, read without changing it where Linux offers that (threads may be writing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds.

    The temporary keeps the target's suffix so writers that pick a format from it still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{target.suffix}", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would outlive the rename
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(target: Path | str, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
