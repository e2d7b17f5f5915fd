"""Tables the commands print: the test-suite summary."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from musicgen_cli.units import human_bytes

STATUS_COLOUR = {"ok": "green", "skipped": "yellow", "failed": "red"}


def suite_table(results: list, out_dir: Path) -> Table:
    """`mgen test-suite`: one row per job result (jobs.suite.JobResult)."""
    table = Table(title=f"mgen test-suite  ({out_dir})")
    for col in ("job", "model", "asked", "produced", "wall", "steps/s", "RTF", "peak VRAM", "peak RAM", "output", "status"):
        table.add_column(col, overflow="fold")
    for r in results:
        table.add_row(
            r.job, r.model, f"{r.duration_asked:g} s", f"{r.duration_produced:.1f} s", f"{r.wall_s:.1f} s",
            f"{r.steps_per_s:.1f}", f"{r.realtime_factor:.2f}", human_bytes(r.peak_vram_bytes),
            human_bytes(r.peak_ram_bytes), r.output or "-", f"[{STATUS_COLOUR[r.status]}]{r.status}[/]",
        )
    return table
