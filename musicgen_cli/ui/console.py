"""The two consoles every command writes to: results on stdout, progress and errors on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def print_error(line: str) -> None:
    """`error: ...` on stderr, the text shown as it is (a path with [brackets] is no markup)."""
    err_console.print("[bold red]error:[/] " + escape(line.removeprefix("error: ")), highlight=False, soft_wrap=True)
