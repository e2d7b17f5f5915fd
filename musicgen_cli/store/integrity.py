"""A cheap look at a model folder before it is loaded: configs parse, weight files are whole.

Reading a safetensors header costs a few kilobytes, so every resolve can afford it, and a
truncated download or a hand-edited config.json ends in one line naming the repair command
instead of a deserializer's traceback halfway through loading.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from musicgen_cli.errors import ModelDamaged
from musicgen_cli.store.cache import unmark_ready

JSON_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json")
# The safetensors format caps its JSON header at 100,000,000 bytes: a larger length is damage.
MAX_HEADER_BYTES = 100_000_000


def damage(folder: Path) -> str | None:
    """Why the folder's files cannot be loaded, or None when they look whole."""
    folder = Path(folder)
    for name in JSON_FILES:
        path = folder / name
        if not path.exists():
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return f"{name} is not JSON"
    for path in sorted(folder.glob("*.safetensors")):
        reason = _safetensors_damage(path)
        if reason:
            return f"{path.name} {reason}"
    return None


def safetensors_header(fh, size: int) -> tuple[int, dict]:
    """(length, header) of the safetensors file open as `fh` at its start, `size` bytes long;
    ValueError naming what is wrong with it ("is truncated ...", "has a damaged header")."""
    head = fh.read(8)
    if len(head) < 8:
        raise ValueError(f"is truncated ({size} bytes)")
    (length,) = struct.unpack("<Q", head)
    if length > min(size - 8, MAX_HEADER_BYTES):
        raise ValueError("is truncated or not a safetensors file")
    try:
        header = json.loads(fh.read(length))
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise ValueError("has a damaged header")
    return length, header


def _safetensors_damage(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        try:
            length, header = safetensors_header(fh, size)
        except ValueError as exc:
            return str(exc)
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict) and "data_offsets" in t]
    need = 8 + length + max(ends, default=0)
    if size < need:
        return f"is truncated ({size:,} of {need:,} bytes)"
    return None


def check_model_folder(folder: Path, repair: str, *, managed: bool) -> None:
    """Raise ModelDamaged naming `repair`; a cache-managed folder stops counting as ready, so
    the repair command fetches (or rebuilds) it instead of trusting the old marker."""
    reason = damage(folder)
    if reason is None:
        return
    if managed:
        unmark_ready(folder)
    raise ModelDamaged(folder, reason, repair)
