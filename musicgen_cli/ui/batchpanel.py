"""Rank 0's live view of `mgen batch`: overall progress over every rank, then a line per rank.

It reads only the files the ranks write (batchlog.snapshot), so it needs no messages between
processes. On a terminal it redraws twice a second; elsewhere it prints a plain line every
few seconds when something changed.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.text import Text

from musicgen_cli.jobs.batchlog import BatchSnapshot, snapshot
from musicgen_cli.ui.panel import _clock

PLAIN_EVERY_S = 5.0


def overall_line(snap: BatchSnapshot) -> str:
    return (
        f"{snap.done + snap.failed}/{snap.pending} items  done {snap.done}  failed {snap.failed}  "
        f"already done {snap.skipped}  {snap.clips_per_min:.1f} clips/min  ETA {_clock(snap.eta_s)}"
    )


def rank_line(rank) -> str:
    return f"rank {rank.rank}: {rank.phase} {rank.detail}  ({rank.done} done, {rank.failed} failed of {rank.assigned})"


class BatchDisplay:
    def __init__(self, console: Console, out_dir: Path, title: str = "mgen batch") -> None:
        self.console = console
        self.out_dir = out_dir
        self.title = title
        self.live: Live | None = None
        self.last: BatchSnapshot | None = None  # kept for the final redraw, after rank 0 clears the run files
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "BatchDisplay":
        if self.console.is_terminal:
            self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=2)
            self.live.__enter__()
        else:
            self._thread = threading.Thread(target=self._plain, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.live:
            self.live.__exit__(*exc)
        if self._thread:
            self._thread.join()

    def render(self) -> Panel:
        snap = self.last = snapshot(self.out_dir) or self.last
        if snap is None:
            return Panel(Text("planning the batch…"), title=self.title, border_style="blue")
        parts = [ProgressBar(total=max(snap.pending, 1), completed=snap.done + snap.failed, width=60), Text(overall_line(snap))]
        parts += [Text(rank_line(r), style="dim") for r in snap.ranks]
        return Panel(Group(*parts), title=self.title, border_style="blue")

    def _plain(self) -> None:
        last = ""
        while not self._stop.wait(PLAIN_EVERY_S):
            snap = snapshot(self.out_dir)
            line = overall_line(snap) if snap else ""
            if line and line != last:
                self.console.print(line, highlight=False)
                last = line
