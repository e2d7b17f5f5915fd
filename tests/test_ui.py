"""RichReporter: bars on a terminal, throttled plain lines in a pipe."""

from __future__ import annotations

import io

from rich.console import Console

from musicgen_cli.events import Progress
from musicgen_cli.ui.reporter import RichReporter


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120, color_system=None), out


def test_plain_lines_are_throttled_and_end_with_the_completing_line():
    con, out = console(terminal=False)
    with RichReporter(con, interval=3600) as reporter:
        reporter.phase("download", "2 files")
        for done in range(0, 1_000_001, 100_000):
            reporter.progress(Progress(task="model.safetensors", done=done, total=1_000_000, unit="B"))
        reporter.progress(Progress(task="model.safetensors", done=1_000_000, total=1_000_000, unit="B"))
        reporter.message("model.safetensors failed its checksum; fetching it again", "warning")

    assert out.getvalue().splitlines() == [
        "download 2 files",
        "model.safetensors: 1.0 MB/1.0 MB (100%)",
        "warning: model.safetensors failed its checksum; fetching it again",
    ]


def test_terminal_shows_a_row_per_task_with_amounts():
    con, out = console(terminal=True)
    with RichReporter(con) as reporter:
        reporter.progress(Progress(task="config.json", done=2_000, total=2_000, unit="B"))
        reporter.progress(Progress(task="total", done=2_000, total=5_000_000, unit="B"))
        reporter.progress(Progress(task="generate", done=120, total=1500, unit="frames"))

    text = out.getvalue()
    assert "config.json" in text and "2.0 kB/2.0 kB" in text
    assert "total" in text and "2.0 kB/5.0 MB" in text
    assert "120/1,500 frames" in text
