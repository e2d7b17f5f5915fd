"""Sizes and durations: reading them from the user, writing them for the user. One formatter each."""

from __future__ import annotations

import math
import re

from musicgen_cli.errors import MgenError

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
GiB = 2**30


def parse_size(text: str | int | float, what: str = "size") -> int:
    """'8GiB', '8 GB', '512MiB', '1.5g' -> bytes; a number (not text) is a byte count.

    Text needs its unit: a bare `8` from a user means 8 GiB far more often than 8 bytes.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise MgenError(f"{what} {text!r} is negative", "give a size like 8GiB or 512MiB")
        return int(text)
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else None
    if match and not unit:
        raise MgenError(f"{what} {text!r} has no unit", f"give a unit, like {match.group(1)}GiB, {match.group(1)}GB or 512MiB")
    if not match or unit not in _UNITS:
        raise MgenError(f"cannot read {what} {text!r}", "give a number with a unit, like 8GiB, 12GB or 512MiB")
    return int(float(match.group(1)) * _UNITS[unit])


def human_bytes(n: float | None) -> str:
    """Bytes in binary units, one decimal: '512 B', '4.0 KiB', '1.5 GiB'; '-' when unknown."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable: TiB ends the loop


def clock(seconds: float | None) -> str:
    """A duration as m:ss; '--:--' when unknown or endless."""
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"
