"""Sections files: how a long piece should develop, one `M:SS prompt` line per section.

```
0:00 solo piano intro, sparse and slow
0:20 the drums enter, bass joins, warm groove
1:10 bridge, strings swell
1:40 outro, piano alone
2:00 end
```

Times are `M:SS`, `H:MM:SS` or plain seconds, in increasing order from `0:00`. A last line
`TIME end` gives the total length (else the clip's duration does). Parsed and checked here,
before any model loads; errors name the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from musicgen_cli.errors import MgenError
from musicgen_cli.text import clean_line, printable, read_text

END_WORD = "end"
ENDINGS = ("cut", "fade", "outro")
MIN_SECTION_S = 0.5  # a section is at least a few codec frames (every model's codebook delay is 4 frames, 0.08 s); this bounds their count too
LOOP_CROSSFADE_S = 1.0  # --loop: the end is crossfaded into the opening over this long
_TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)$")
_FIX = "write one section a line as `M:SS prompt`, in increasing time from 0:00, and optionally a last `M:SS end`"


@dataclass(frozen=True)
class Segments:
    sections: tuple[tuple[float, str], ...]  # (start seconds, prompt), first at 0
    end_s: float | None  # the `end` line's time, when given


def parse_time(text: str) -> float:
    """`75`, `1:15`, `1:15.5` or `0:01:15` -> seconds; ValueError otherwise."""
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(text)
    a, b, seconds = match.groups()
    hours, minutes = (int(a), int(b)) if b is not None else (0, int(a or 0))
    if b is not None and int(b) >= 60 or (a is not None and float(seconds) >= 60):
        raise ValueError(text)
    return hours * 3600 + minutes * 60 + float(seconds)


def format_time(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}" if rest % 1 else f"{int(minutes)}:{int(rest):02d}"


def parse_segments(lines: list[str] | str, source: str = "sections") -> Segments:
    """Sections from text (a file's content or JSONL's list of lines); MgenError naming the line."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    sections: list[tuple[float, str]] = []
    end: float | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        if end is not None:
            raise MgenError(f"{where} comes after the `end` line", "put `M:SS end` last")
        stamp, prompt = (line.split(None, 1) + [""])[:2]  # a space or a tab (spreadsheets export tabs)
        try:
            start = parse_time(stamp)
        except ValueError:
            raise MgenError(f"{where}: {printable(stamp)!r} is not a time", _FIX) from None
        prompt = clean_line(prompt)
        if not prompt:
            raise MgenError(f"{where}: the section at {stamp} has no prompt", _FIX)
        if not sections and start != 0:
            raise MgenError(f"{where}: the first section starts at {stamp}, not 0:00", _FIX)
        if sections and start <= sections[-1][0]:
            raise MgenError(f"{where}: {stamp} is not after the previous section's start", _FIX)
        if prompt.lower() == END_WORD:
            if not sections:
                raise MgenError(f"{where}: `end` before any section", _FIX)
            end = start
        else:
            sections.append((start, prompt))
    if not sections:
        raise MgenError(f"{source} has no sections", _FIX)
    return Segments(tuple(sections), end)


def read_segments(path: Path | str) -> Segments:
    return parse_segments(read_text(path, "sections"), source=str(path))


def check_fits(sections: tuple[tuple[float, str], ...], duration: float, source: str = "sections") -> None:
    """Every section must start inside the piece and last at least MIN_SECTION_S."""
    for (start, prompt), end in zip(sections, [s for s, _ in sections[1:]] + [duration]):
        if start >= duration:
            raise MgenError(
                f"{source}: the section {prompt!r} at {format_time(start)} starts at or after the end ({format_time(duration)})",
                "lengthen --duration, add a later `M:SS end` line, or drop the section",
            )
        if end - start < MIN_SECTION_S:
            raise MgenError(
                f"{source}: the section {prompt!r} at {format_time(start)} lasts {end - start:.2f} s, less than {MIN_SECTION_S:g} s",
                f"give every section at least {MIN_SECTION_S:g} s, or merge it with its neighbour",
            )
