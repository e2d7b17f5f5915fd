"""Tables the commands print: the model list and the test-suite summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from musicgen_cli.units import human_bytes

STATUS_COLOUR = {"ok": "green", "skipped": "yellow", "failed": "red"}


def models_table(rows: list[dict[str, Any]], root: Path) -> Table:
    """`mgen models`: one row per manifest entry (the dicts `--json` prints)."""
    table = Table(title=f"Models (cache: {root})")
    for col in ("key", "repo id", "cached", "size", "capabilities"):
        table.add_column(col)
    for row in rows:
        caps = ["stereo" if row["stereo"] else "mono"]
        caps += ["melody"] if row["melody"] else []
        caps += ["[yellow]random weights[/]"] if row["random_weights"] else []
        table.add_row(
            row["key"],
            row["repo_id"] or "(built locally)",
            "[green]yes[/]" if row["cached"] else "no",
            human_bytes(row["size_bytes"]) if row["size_bytes"] else "-",
            ", ".join(caps),
        )
    return table


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
