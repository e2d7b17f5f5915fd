"""Rank 0's live view of `mgen batch`: overall progress over every rank, then a line per rank.

It reads only the files the ranks write (batchlog.snapshot), so it needs no messages between
processes: on a terminal the panel redraws from them; elsewhere a plain line prints when
something changed (at most once per interval).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.text import Text

from musicgen_cli.jobs.batchlog import BatchSnapshot, snapshot
from musicgen_cli.ui.live import LiveDisplay
from musicgen_cli.units import clock


def overall_line(snap: BatchSnapshot) -> str:
    running = f"  running {snap.running}" if snap.running else ""
    return (
        f"{snap.done + snap.failed}/{snap.pending} items  done {snap.done}{running}  failed {snap.failed}  "
        f"already done {snap.skipped}  {snap.clips_per_min:.1f} clips/min  ETA {clock(snap.eta_s)}"
    )


def rank_line(rank) -> str:
    where = f" (pid {rank.pid} on {rank.host})" if rank.pid else ""
    return f"{rank.kind} {rank.rank}{where}: {rank.phase} {rank.detail}  ({rank.done} done, {rank.failed} failed of {rank.assigned})"


class BatchDisplay(LiveDisplay):
    def __init__(self, console: Console, out_dir: Path, title: str = "mgen batch") -> None:
        super().__init__(console)
        self.out_dir = out_dir
        self.title = title
        self.last: BatchSnapshot | None = None  # kept for the final redraw, after rank 0 clears the run files

    def render(self) -> Panel:
        snap = self.last = snapshot(self.out_dir) or self.last
        if snap is None:
            return Panel(Text("planning the batch…"), title=self.title, border_style="blue")
        parts = [ProgressBar(total=max(snap.pending, 1), completed=snap.done + snap.failed, width=60), Text(overall_line(snap))]
        parts += [Text(rank_line(r), style="dim") for r in snap.ranks]
        return Panel(Group(*parts), title=self.title, border_style="blue")

    def poll_line(self) -> str | None:
        snap = snapshot(self.out_dir)
        return overall_line(snap) if snap else None
