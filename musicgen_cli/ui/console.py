"""The two consoles every command writes to: results on stdout, progress and errors on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from musicgen_cli.text import printable

MIN_WIDTH = 40  # narrower than this is a stray COLUMNS (0, 1...), not a terminal: Rich would print nothing
DEFAULT_WIDTH = 80


def sane_width(console: Console) -> Console:
    """`console` laid out at least MIN_WIDTH wide, so no setting of COLUMNS can swallow output."""
    if console.width < MIN_WIDTH:
        console.width = DEFAULT_WIDTH
    return console


console = sane_width(Console())
err_console = sane_width(Console(stderr=True))


def print_error(line: str) -> None:
    """`error: ...` on stderr, the text shown as it is (a path with [brackets] is no markup)."""
    err_console.print("[bold red]error:[/] " + escape(printable(line.removeprefix("error: "))), highlight=False, soft_wrap=True)
