"""Where models live on disk, when a model folder counts as ready, and atomic writes.

The cache root is --cache-dir, else MGEN_CACHE_DIR, else `model-cache/` in the source checkout
mgen runs from (an editable install or PYTHONPATH), else the platform's user cache directory
(an installed wheel: pip, pipx), which platformdirs knows.

A model folder is *ready* only once `.mgen-ready.json` exists in it; that marker is written
last (atomically) by a verified download, an import or the random-model builder, so an
interrupted job never leaves a folder that looks usable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import platformdirs

from musicgen_cli import config
from musicgen_cli.errors import MgenError, ValidationError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_DIR.parent
READY_MARKER = ".mgen-ready.json"
_OUR_PYPROJECT = re.compile(r'^name\s*=\s*"mgen"\s*$', re.MULTILINE)


def in_checkout() -> bool:
    """True when the package runs from its source checkout rather than an installed copy."""
    try:
        return bool(_OUR_PYPROJECT.search((PROJECT_ROOT / "pyproject.toml").read_text()))
    except OSError:
        return False


def cache_location(override: str | Path | None = None) -> tuple[Path, str]:
    """The cache root and what chose it: "--cache-dir", "MGEN_CACHE_DIR", "checkout" or "user cache"."""
    if override:
        chosen, origin = Path(override), "--cache-dir"
    elif config.cache_dir():
        chosen, origin = config.cache_dir(), "MGEN_CACHE_DIR"
    elif in_checkout():
        chosen, origin = PROJECT_ROOT / "model-cache", "checkout"
    else:
        chosen, origin = Path(platformdirs.user_cache_dir("mgen", appauthor=False)), "user cache"
    return Path(chosen).expanduser().resolve(), origin


_HASH_CHUNK = 8 * 1024 * 1024


def cache_root(override: str | Path | None = None) -> Path:
    """--cache-dir, else MGEN_CACHE_DIR, else model-cache/ in a checkout, else the user cache directory."""
    root = cache_location(override)[0]
    if root.exists() and not root.is_dir():
        raise ValidationError("cache_dir", f"{root} is a file, not a folder", "point it at a folder (or one that does not exist yet)")
    return root


def data_root() -> Path:
    """MGEN_DATA_DIR, else the user's data folder (platformdirs: ~/.local/share/mgen on Linux)."""
    from platformdirs import user_data_dir

    return Path(config.data_dir() or user_data_dir("mgen", appauthor=False)).expanduser()


def config_root() -> Path:
    """The user's mgen settings folder (MGEN_CONFIG_DIR, else the platform's user config folder)."""
    from platformdirs import user_config_dir

    return Path(config.config_dir() or user_config_dir("mgen", appauthor=False)).expanduser()


def studio_history_path() -> Path:
    """The studio's line history, kept across sessions."""
    return data_root() / "studio-history"


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


def file_digest(path: Path, algorithm: str = "sha256", prefix: bytes = b"", on_bytes=None) -> str:
    digest = hashlib.new(algorithm, prefix)
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def hash_files(folder: Path) -> dict[str, dict]:
    """{name: {size, sha256}} of a model folder's files (hidden bookkeeping files left out),
    the record `mgen models verify` checks the folder against later."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    return {p.name: {"size": p.stat().st_size, "sha256": file_digest(p)} for p in files}


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
