"""Text as it arrives: one decoder for the command line, files and stdin.

Every piece of user text goes through here: UTF-8 (a byte-order mark, as Notepad writes,
is dropped), invalid bytes refused with their byte offset, and terminal escape sequences and
other control characters removed from prompts, so nothing echoed can drive the terminal and
no name is built from them. Names a user gives (an output file) are refused rather than
silently changed.
"""

from __future__ import annotations

import re
from pathlib import Path

from musicgen_cli.errors import MgenError, ValidationError

BOM = "\ufeff"
MAX_TEXT_FILE_BYTES = 16 * 2**20  # a prompt, lyrics, sections or batch file larger is not text a person wrote
# ESC-introduced sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL|ST`, two-byte escapes), then
# every other C0/C1 control but tab and newline, and DEL.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_UTF8_FIX = "save it as UTF-8 text"


class TextError(MgenError):
    """Text that is not UTF-8, or a name with characters a file name must not hold."""


def decode(data: bytes, source: str, fix: str = _UTF8_FIX) -> str:
    """`data` as UTF-8 (BOM dropped, CRLF kept for splitlines); TextError naming the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        newlines = data[: exc.start].count(b"\n")
        line = f" (line {newlines + 1})" if b"\n" in data else ""
        raise TextError(f"{source} is not UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start}{line}", fix) from None
    return text.removeprefix(BOM)


def read_text(path: Path | str, what: str, *, max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """A whole text file through `decode`, refused past `max_bytes` before it is read."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        reason = "is a folder" if isinstance(exc, IsADirectoryError) else (exc.strerror or str(exc)).lower()
        raise TextError(f"cannot read {what} file {printable(str(path))}: {reason}", "check the path") from None
    if len(data) > max_bytes:
        raise TextError(f"{what} file {printable(str(path))} is larger than {max_bytes // 2**20} MiB", "give a smaller text file")
    return decode(data, f"{what} file {printable(str(path))}")


def argument(value: str, what: str) -> str:
    """A command-line argument back to its bytes and through `decode` (Python hands invalid
    bytes over as lone surrogates)."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    return decode(value.encode("utf-8", "surrogateescape"), f"{what} ({printable(value)})",
                  "pass it as UTF-8 (set the terminal or the calling program to UTF-8)")


def clean(text: str) -> str:
    """`text` without escape sequences or control characters (tabs and newlines stay)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text.removeprefix(BOM)))


def clean_line(text: str) -> str:
    """One line for a prompt: `clean`, with tabs and line breaks as spaces."""
    return " ".join(clean(text).split())


def printable(text: str) -> str:
    """`text` on one line with every control character (line breaks too) and lone surrogate
    shown as an escape, for echoing."""
    return "".join(ascii(ch)[1:-1] if _UNPRINTABLE.match(ch) else ch for ch in text)


def check_name(name: str, setting: str) -> None:
    """A file or folder name the user gave: no control characters, valid UTF-8."""
    for index, ch in enumerate(name):
        if "\udc80" <= ch <= "\udcff":
            raise ValidationError(setting, f"{printable(name)} is not UTF-8 (character {index + 1})", "use a UTF-8 name")
        if _UNPRINTABLE.match(ch) or ch == "\t":
            raise ValidationError(
                setting, f"{printable(name)} holds a control character ({ascii(ch)[1:-1]}) at character {index + 1}",
                "use a name of ordinary characters",
            )
