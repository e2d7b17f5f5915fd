"""The live Rich panel of `mgen generate`: phases, progress in audio seconds, memory and CPU.

A Reporter (events.py) for the CLI. On a terminal it redraws a panel a few times a second;
elsewhere (pipes, CI logs) it prints a plain progress line every few seconds.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from musicgen_cli.events import Progress
from musicgen_cli.ui.live import LiveDisplay
from musicgen_cli.units import clock, human_bytes


def result_summary(record: dict, clips: int) -> str:
    """The one line after a generation, from the sidecar record of its first clip (jobs.run.Written):
    audio made, time spent, speed, peak memory."""
    timings, settings, composition = record["timings_s"], record["settings"], record.get("composition")
    spent = timings["generate"] + timings["decode"]
    piece = ""
    if composition:  # a composed piece says how it was made
        rerolls = len(composition["rerolls"]) - 1
        piece = (f"{len(composition['sections'])} section(s), ending {settings['ending']}"
                 + (", loop" if settings["loop"] else "") + (f", {rerolls} re-roll(s) of a silent ending" if rerolls else "") + "; ")
    return piece + (
        f"{settings['duration']:g} s of audio x {clips} in {spent:.1f} s: {record['steps_per_s']:.1f} steps/s, "
        f"{record['realtime_factor']:.2f}x real time, peak RAM {human_bytes(record.get('peak_ram_bytes'))}"
        + (f", peak VRAM {human_bytes(record['peak_vram_bytes'])}" if record.get("peak_vram_bytes") else "")
    )


class _Rate:
    """Progress rate over the current phase, for speed and ETA."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first_done: float | None = None
        self.first_t: float | None = None

    def per_s(self, done: float) -> float:
        now = time.perf_counter()
        if self.first_done is None:
            self.first_done, self.first_t = done, now
            return 0.0
        dt = now - (self.first_t or now)
        return (done - self.first_done) / dt if dt > 0 else 0.0


def describe(update: Progress, rate: float) -> str:
    """One line for a progress update: amounts, speed, ETA."""
    total = update.total or 0
    left = (total - update.done) / rate if rate > 0 and total else None
    if update.unit == "frames":
        fr = update.readouts.get("frame_rate") or 50.0
        return (
            f"{update.done / fr:5.1f} / {total / fr:.1f} s audio  {int(update.done)}/{int(total)} frames  "
            f"{rate:5.1f} steps/s  ETA {clock(left)}"
        )
    if update.unit == "B":
        return f"{human_bytes(update.done)} / {human_bytes(total)}  {human_bytes(rate)}/s  ETA {clock(left)}"
    return f"{update.done:g} / {total:g} {update.unit}  ETA {clock(left)}"


def readout_lines(r: dict[str, Any]) -> list[str]:
    """Memory, CPU and GPU readouts from monitor.snapshot() (as a dict)."""
    lines = []
    if "rss_bytes" in r:
        lines.append(
            f"RAM  process {human_bytes(r['rss_bytes'])} (peak {human_bytes(r.get('peak_rss_bytes'))})  "
            f"system {human_bytes(r.get('ram_used_bytes'))} / {human_bytes(r.get('ram_total_bytes'))}"
        )
    if "cpu_percent" in r:
        cores = r.get("per_core_percent") or []
        bars = "".join(" ▁▂▃▄▅▆▇█"[min(8, int(p / 12.5))] for p in cores)
        lines.append(
            f"CPU  {r['cpu_percent']:.0f} %  cores {bars}  torch threads {r.get('torch_threads')} intra / "
            f"{r.get('torch_interop_threads')} inter"
        )
    for gpu in r.get("gpus") or []:
        util = gpu.get("utilisation")
        lines.append(
            f"GPU{gpu['index']} {gpu['name']}  {human_bytes(gpu['used_bytes'])} / {human_bytes(gpu['total_bytes'])}"
            f"  peak {human_bytes(gpu['peak_allocated_bytes'])}" + (f"  util {util:.0f} %" if util is not None else "")
        )
    return lines


class GenerationPanel(LiveDisplay):
    """Reporter rendering phases with their times, the current progress and live readouts."""

    def __init__(self, console: Console | None = None, title: str = "mgen") -> None:
        super().__init__(console)
        self.title = title
        self.phases: list[tuple[str, str, float, float | None]] = []  # name, detail, start, end
        self.current: Progress | None = None
        self.rate = _Rate()
        self.rate_now = 0.0

    def __exit__(self, *exc) -> None:
        self._close_phase()
        super().__exit__(*exc)

    # -- Reporter -----------------------------------------------------------------------------
    def phase(self, name: str, detail: str = "") -> None:
        self._close_phase()
        self.phases.append((name, detail, time.perf_counter(), None))
        self.current, self.rate = None, _Rate()
        if not self.live_mode:
            self.console.print(f"[{name}] {detail}".rstrip(), markup=False, highlight=False, soft_wrap=True)

    def progress(self, update: Progress) -> None:
        self.current = update
        rate = self.rate_now = self.rate.per_s(update.done)
        if not self.live_mode:
            finished = update.total is not None and update.done >= update.total
            if self.due("progress", finished=finished):
                extra = readout_lines(update.readouts)[:1]
                line = f"  {update.task}: {describe(update, rate)}" + (f"  | {extra[0]}" if extra else "")
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def message(self, text: str, level: str = "info") -> None:
        style = "yellow" if level == "warning" else "cyan"
        self.console.print(f"[{style}]{level}:[/] {escape(text)}", highlight=False, soft_wrap=True)

    # -- rendering ----------------------------------------------------------------------------
    def _close_phase(self) -> None:
        if self.phases and self.phases[-1][3] is None:
            name, detail, start, _ = self.phases[-1]
            self.phases[-1] = (name, detail, start, time.perf_counter())

    def render(self) -> Panel:
        table = Table.grid(padding=(0, 2))
        table.add_column(width=2)
        table.add_column(min_width=14)
        table.add_column(justify="right", min_width=7)
        table.add_column(overflow="ellipsis", no_wrap=True)
        now = time.perf_counter()
        for name, detail, start, end in self.phases:
            mark = "[green]✓[/]" if end is not None else "[cyan]●[/]"
            table.add_row(mark, name, f"{(end or now) - start:.1f} s", Text(detail, style="dim"))
        parts: list[Any] = [table]
        update = self.current
        if update is not None:
            rate = self.rate_now
            row = Table.grid(padding=(0, 1))
            row.add_row(ProgressBar(total=update.total or 1, completed=update.done, width=30), Text(describe(update, rate)))
            parts.append(row)
            parts.extend(Text(line, style="dim") for line in readout_lines(update.readouts))
        return Panel(Group(*parts), title=self.title, border_style="blue")
