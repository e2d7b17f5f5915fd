"""RichReporter: bars on a terminal, throttled plain lines in a pipe."""

from __future__ import annotations

import io
from pathlib import Path

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
        "model.safetensors: 976.6 KiB/976.6 KiB (100%)",
        "warning: model.safetensors failed its checksum; fetching it again",
    ]


def test_terminal_shows_a_row_per_task_with_amounts():
    con, out = console(terminal=True)
    with RichReporter(con) as reporter:
        reporter.progress(Progress(task="config.json", done=2_048, total=2_048, unit="B"))
        reporter.progress(Progress(task="total", done=2_048, total=5_000_000, unit="B"))
        reporter.progress(Progress(task="generate", done=120, total=1500, unit="frames"))

    text = out.getvalue()
    assert "config.json" in text and "2.0 KiB/2.0 KiB" in text
    assert "total" in text and "2.0 KiB/4.8 MiB" in text
    assert "120/1,500 frames" in text


def test_every_live_view_shares_one_base_and_one_interval():
    from musicgen_cli.ui.batchpanel import BatchDisplay
    from musicgen_cli.ui.live import PLAIN_EVERY_S, LiveDisplay
    from musicgen_cli.ui.panel import GenerationPanel

    con, _ = console(terminal=False)
    views = [GenerationPanel(con), RichReporter(con), BatchDisplay(con, Path("."))]
    assert all(isinstance(v, LiveDisplay) and v.interval == PLAIN_EVERY_S for v in views)


def test_generation_panel_plain_lines_are_throttled_by_the_base():
    from musicgen_cli.ui.panel import GenerationPanel

    con, out = console(terminal=False)
    with GenerationPanel(con) as panel:
        panel.interval = 3600
        panel.phase("generate", "1 s")
        for done in range(0, 51, 10):
            panel.progress(Progress(task="generate", done=done, total=50, unit="frames", readouts={"frame_rate": 50.0}))
    lines = out.getvalue().splitlines()
    # The first line, then nothing until the finishing one.
    assert lines[0] == "[generate] 1 s" and len(lines) == 3
    assert "0.0 / 1.0 s audio" in lines[1] and "1.0 / 1.0 s audio  50/50 frames" in lines[2]


def test_units_format_sizes_and_times():
    from musicgen_cli.units import clock, human_bytes, parse_size

    assert [human_bytes(n) for n in (None, 512, 4096, 1.5 * 2**30)] == ["-", "512 B", "4.0 KiB", "1.5 GiB"]
    assert parse_size("8GiB") == 8 * 2**30 and parse_size("1.5g") == 1_500_000_000
    assert [clock(s) for s in (None, float("inf"), 75.9)] == ["--:--", "--:--", "1:15"]
