"""The Rich side of the Reporter: live progress bars on a terminal, throttled plain lines elsewhere."""

from __future__ import annotations

import time

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from musicgen_cli.events import Progress

_DONE = float("inf")  # marks a task whose completing line was printed
_LEVEL_STYLE = {"warning": "yellow", "error": "red"}


def _amount(done: float, total: float | None, unit: str) -> str:
    """'1.2 MB/5.0 MB' for bytes, '120/1,500 frames' for any other unit."""
    if unit == "B":
        return f"{filesize.decimal(int(done))}/{'?' if total is None else filesize.decimal(int(total))}"
    return f"{done:,.0f}/{'?' if total is None else f'{total:,.0f}'}{' ' + unit if unit else ''}"


class _AmountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(_amount(task.completed, task.total, task.fields.get("unit", "")), style="progress.download")


class _SpeedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("")
        unit = task.fields.get("unit", "")
        text = f"{filesize.decimal(int(speed))}/s" if unit == "B" else f"{speed:.1f} {unit}/s"
        return Text(text, style="progress.data.speed")


class RichReporter:
    """A Reporter for the terminal. Use as a context manager around the work it reports.

    On a terminal each progress task gets a bar (bytes, speed and ETA for unit "B"); when the
    console is not a terminal (a pipe, a log file) it prints one line per task at most every
    `interval` seconds, and always the line that completes a task.
    """

    def __init__(self, console: Console | None = None, *, interval: float = 2.0):
        self.console = console or Console()
        self.live = self.console.is_terminal
        self.interval = interval
        self._bars: RichProgress | None = None
        self._tasks: dict[str, int] = {}
        self._last_line: dict[str, float] = {}

    def __enter__(self) -> RichReporter:
        if self.live:
            self._bars = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                _AmountColumn(),
                _SpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._bars.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def phase(self, name: str, detail: str = "") -> None:
        self.console.print(f"[bold cyan]{name}[/] {detail}".rstrip(), highlight=False, soft_wrap=True)

    def message(self, text: str, level: str = "info") -> None:
        style = _LEVEL_STYLE.get(level)
        prefix = f"{level}: " if style else ""
        self.console.print(Text(prefix + text, style=style or ""), soft_wrap=True)

    def progress(self, update: Progress) -> None:
        if self._bars is None:
            self._plain(update)
            return
        task = self._tasks.get(update.task)
        if task is None:
            task = self._bars.add_task(update.task, total=update.total, unit=update.unit)
            self._tasks[update.task] = task
        self._bars.update(task, completed=update.done, total=update.total)

    def _plain(self, update: Progress) -> None:
        now = time.monotonic()
        last = self._last_line.setdefault(update.task, now)  # a task's first line waits one interval
        finished = update.total is not None and update.done >= update.total
        if last == _DONE or (not finished and now - last < self.interval):
            return
        self._last_line[update.task] = _DONE if finished else now
        percent = f" ({100 * update.done / update.total:.0f}%)" if update.total else ""
        self.console.print(
            f"{update.task}: {_amount(update.done, update.total, update.unit)}{percent}", highlight=False, soft_wrap=True
        )
