"""The Rich side of the Reporter: live progress bars on a terminal, throttled plain lines elsewhere."""

from __future__ import annotations

from rich.console import Console, RenderableType
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
from musicgen_cli.ui.console import sane_width
from musicgen_cli.ui.live import PLAIN_EVERY_S, LiveDisplay
from musicgen_cli.units import human_bytes

_LEVEL_STYLE = {"warning": "yellow", "error": "red"}


def _amount(done: float, total: float | None, unit: str) -> str:
    """'1.2 MiB/5.0 MiB' for bytes, '120/1,500 frames' for any other unit."""
    if unit == "B":
        return f"{human_bytes(done)}/{'?' if total is None else human_bytes(total)}"
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
        text = f"{human_bytes(speed)}/s" if unit == "B" else f"{speed:.1f} {unit}/s"
        return Text(text, style="progress.data.speed")


class RichReporter(LiveDisplay):
    """A Reporter for the terminal. Use as a context manager around the work it reports.

    On a terminal each progress task gets a bar (bytes, speed and ETA for unit "B"); when the
    console is not a terminal (a pipe, a log file) it prints one line per task at most every
    `interval` seconds, and always the line that completes a task.
    """

    def __init__(self, console: Console | None = None, *, interval: float = PLAIN_EVERY_S):
        super().__init__(console or sane_width(Console()), interval=interval)
        self._bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            _AmountColumn(),
            _SpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._tasks: dict[str, int] = {}
        self._finished: set[str] = set()

    def render(self) -> RenderableType:
        return self._bars

    def phase(self, name: str, detail: str = "") -> None:
        self.console.print(f"[bold cyan]{name}[/] {detail}".rstrip(), highlight=False, soft_wrap=True)

    def message(self, text: str, level: str = "info") -> None:
        style = _LEVEL_STYLE.get(level)
        prefix = f"{level}: " if style else ""
        self.console.print(Text(prefix + text, style=style or ""), soft_wrap=True)

    def progress(self, update: Progress) -> None:
        if not self.live_mode:
            self._plain(update)
            return
        task = self._tasks.get(update.task)
        if task is None:
            task = self._bars.add_task(update.task, total=update.total, unit=update.unit)
            self._tasks[update.task] = task
        self._bars.update(task, completed=update.done, total=update.total)

    def _plain(self, update: Progress) -> None:
        finished = update.total is not None and update.done >= update.total
        if update.task in self._finished or not self.due(update.task, finished=finished, first_waits=True):
            return
        if finished:
            self._finished.add(update.task)
        percent = f" ({100 * update.done / update.total:.0f}%)" if update.total else ""
        self.console.print(
            f"{update.task}: {_amount(update.done, update.total, update.unit)}{percent}", highlight=False, soft_wrap=True
        )
