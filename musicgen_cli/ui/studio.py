"""The terminal side of `mgen studio`: reading lines, the live panel per take, showing replies.

On a terminal lines come from prompt_toolkit (line editing, history kept across sessions,
Tab completes commands); otherwise they are read from stdin and echoed, so a scripted session
(`mgen studio < session.txt`) leaves a readable log. The session logic is jobs/studio.py.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from musicgen_cli.events import Reporter
from musicgen_cli.jobs.studio import Reply, Studio
from musicgen_cli.jobs.studio_lines import COMMANDS
from musicgen_cli.text import TextError, decode, printable
from musicgen_cli.ui.panel import GenerationPanel, result_summary

PROMPT = "studio> "


class StudioScreen:
    """Where a session's output goes: replies on `console`, panels and errors on `err_console`."""

    def __init__(self, console: Console, err_console: Console) -> None:
        self.console = console
        self.err_console = err_console

    def working(self, title: str) -> AbstractContextManager[Reporter]:
        """The live generation panel around a load or a take (plain lines when not a terminal)."""
        return GenerationPanel(self.err_console, title)

    # -- input --------------------------------------------------------------------------------
    def lines(self, history: Path) -> Iterator[str]:
        """Lines typed at the prompt (Ctrl-C clears the line, Ctrl-D ends), or stdin's lines."""
        if sys.stdin.isatty() and sys.stdout.isatty():
            yield from self._prompted(history)
            return
        raw_lines = getattr(sys.stdin, "buffer", sys.stdin)  # bytes, so one decoder words what is not UTF-8
        for number, raw in enumerate(raw_lines, start=1):
            try:
                line = raw if isinstance(raw, str) else decode(raw.rstrip(b"\r\n"), f"input line {number}", "type or pipe UTF-8 text")
            except TextError as exc:
                self.show(Reply("error", str(exc)))
                continue
            line = line.rstrip("\r\n")
            if not sys.stdin.isatty():
                self.console.print(f"{PROMPT}{printable(line)}", markup=False, highlight=False, soft_wrap=True)
            yield line

    def _prompted(self, path: Path) -> Iterator[str]:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(path))
        except OSError as exc:
            self.warn(f"history not kept ({path}: {exc.strerror or exc})")
            history = InMemoryHistory()
        session: PromptSession[str] = PromptSession(
            history=history,
            auto_suggest=AutoSuggestFromHistory(),
            completer=WordCompleter([f"/{name}" for name in COMMANDS], WORD=True),
            complete_while_typing=False,
        )
        while True:
            try:
                yield session.prompt(PROMPT)
            except KeyboardInterrupt:
                continue
            except EOFError:
                return

    # -- output -------------------------------------------------------------------------------
    def warn(self, text: str) -> None:
        self.err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)

    def show(self, reply: Reply) -> bool:
        """Render one reply; False when the session should end."""
        kind = reply.kind
        if kind == "quit":
            return False
        if kind == "take" and reply.take and reply.written:
            take = reply.take
            extends = f", continues take {take.extends}" if take.extends else ""
            for path in take.files:
                self.console.print(f"[green]take {take.number}[/] {escape(str(path))}  (+ {path.with_suffix('.json').name})",
                                   highlight=False, soft_wrap=True)
            self.console.print(f"seed {take.seed}, {take.duration_s:.1f} s{extends}; {result_summary(reply.written[0].sidecar, len(reply.written))}",
                               highlight=False, soft_wrap=True)
        elif kind in ("error", "failed"):
            self.err_console.print(f"[bold red]error:[/] {escape(reply.text)}", highlight=False, soft_wrap=True)
        elif kind == "stopped":
            self.err_console.print(f"[yellow]stopped:[/] {escape(reply.text)}", highlight=False, soft_wrap=True)
        elif kind == "info":
            self.console.print(escape(reply.text), highlight=False, soft_wrap=True)
        elif kind == "settings":
            self.console.print(_pairs(reply.data), highlight=False)
        elif kind == "takes":
            self.console.print(takes_table(reply.data) if reply.data else "no takes yet", highlight=False)
        elif kind == "plan":
            from musicgen_cli.ui.memory_views import plan_view

            self.console.print(plan_view(reply.data, reply.text))
        elif kind == "help":
            self.console.print(help_view(reply.data), highlight=False)
        return True


def _pairs(data: dict) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        table.add_row(key, escape(str(value)))
    return table


def help_view(commands: dict[str, tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("any text", "a take of that prompt with the current settings")
    for name, (args, what) in commands.items():
        table.add_row(escape(f"/{name} {args}".rstrip()), what)
    return table


def takes_table(takes) -> Table:
    table = Table(title="takes", title_justify="left")
    for column, justify in (("#", "right"), ("prompt", "left"), ("seed", "right"), ("duration", "right"), ("file", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for take in takes:
        prompt = take.prompt + (f" (+ take {take.extends})" if take.extends else "")
        files = "\n".join(str(p) for p in take.files)
        table.add_row(str(take.number), escape(prompt), str(take.seed), f"{take.duration_s:.1f} s", escape(files))
    return table


def run_session(studio: Studio, screen: StudioScreen, history: Path) -> int:
    """Read and run lines until /quit or the end of input; returns the number of takes made."""
    for line in screen.lines(history):
        try:
            reply = studio.handle(line)
        except KeyboardInterrupt:
            reply = Reply("stopped", "stopped")
        if not screen.show(reply):
            break
    return len(studio.takes)
