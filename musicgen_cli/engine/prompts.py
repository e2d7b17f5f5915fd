"""Prompt text: prompt files, lyrics folded into the text conditioning, output slugs.

MusicGen cannot sing words. A lyrics file therefore changes only the *description*: we
append `with vocals, song titled "<title>", themes: <w1>, <w2>, <w3>` where the title is the
first non-empty line and the themes are the lyrics' most frequent content words. The title
also names the output file.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from musicgen_cli.errors import MgenError
from musicgen_cli.text import clean, read_text

LYRICS_NOTICE = "MusicGen cannot sing words: the lyrics' title and themes steer the style, no words will be sung."
_STOPWORDS = set(
    "a an and are as at be but by for from i i'm im in is it it's its me my of oh on or so that the this "
    "to we with you your yeah our us was were will just all no not do don't can't when what where who "
    "how up down out into over like than then there they them he she his her be been being".split()
)
THEME_WORDS = 3


@dataclass(frozen=True)
class Lyrics:
    title: str
    body: str

    def themes(self, n: int = THEME_WORDS) -> list[str]:
        words = re.findall(r"[a-z']+", self.body.lower())
        counts = Counter(w.strip("'") for w in words if w not in _STOPWORDS and len(w) > 2)
        return [w for w, _ in counts.most_common(n)]


def read_text_file(path: Path | str, what: str) -> str:
    """A prompt or lyrics file as clean text (see musicgen_cli.text), never empty."""
    text = clean(read_text(path, what)).strip()
    if not text:
        raise MgenError(f"{what} file {path} is empty", f"write the {what} into it")
    return text


def read_lyrics(path: Path | str) -> Lyrics:
    lines = [line.strip() for line in read_text_file(path, "lyrics").splitlines()]
    lines = [line for line in lines if line]
    title = lines[0].lstrip("#").strip()
    return Lyrics(title=title, body="\n".join(lines[1:]) or title)


def fold_lyrics(prompt: str, lyrics: Lyrics) -> str:
    themes = ", ".join(lyrics.themes())
    extra = f'with vocals, song titled "{lyrics.title}"' + (f", themes: {themes}" if themes else "")
    return f"{prompt.rstrip(' .,')}, {extra}" if prompt.strip() else extra


def slugify(text: str, max_len: int = 60) -> str:
    """A safe file stem from free text: lowercase words joined by '-', never empty."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "output"
