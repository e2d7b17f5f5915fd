"""Rich rendering of a weight-matching report (front end only; the engine never imports this)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from musicgen_cli.importing.keymatch import MatchReport

_KIND_HELP = {
    "exact": "same name",
    "rule": "known audiocraft -> transformers rename",
    "suffix": "same name under another prefix",
    "shape": "only weight of that shape in its module",
    "fuzzy": "similar name, same shape (applied on request)",
}


def _names(console: Console, title: str, names: list[str], style: str) -> None:
    if not names:
        return
    console.print(f"[{style}]{title} ({len(names)}):[/]")
    for name in names:
        console.print(f"  {name}", highlight=False)


def render_match_report(console: Console, report: MatchReport, *, from_base: str | None = None) -> None:
    """Counts per match kind, proposed and fuzzy matches with scores, every leftover name."""
    counts = Table(title="Weight matches", title_justify="left")
    counts.add_column("kind")
    counts.add_column("count", justify="right")
    counts.add_column("meaning")
    for kind, count in report.counts().items():
        counts.add_row(kind, str(count), _KIND_HELP[kind])
    console.print(counts)
    if report.left_optional and from_base:
        console.print(f"[dim]{len(report.left_optional)} text-encoder weight(s) come from base model {from_base!r}[/]")
    fuzzy = [m for m in report.matches if m.kind == "fuzzy"]
    for title, matches in (
        ("Proposed matches, NOT applied (--apply-proposed or APPLY_PROPOSED=1 applies them)", report.proposed),
        ("Fuzzy matches applied", fuzzy),
    ):
        if matches:
            table = Table(title=title, title_justify="left")
            for col in ("source", "target", "score"):
                table.add_column(col)
            for m in matches:
                table.add_row(m.source, m.target, f"{m.score:.2f}")
            console.print(table)
    if report.shape_errors:
        table = Table(title="Shape mismatches (errors)", title_justify="left", style="red")
        for col in ("source", "shape", "target", "shape", "found by"):
            table.add_column(col)
        for e in report.shape_errors:
            table.add_row(e.source, str(list(e.source_shape)), e.target, str(list(e.target_shape)), e.kind)
        console.print(table)
    _names(console, "Unmatched source weights (not used)", report.unmatched_source, "yellow")
    _names(console, "Missing target weights (required)", report.unmatched_target, "bold red")
    _names(console, "Ignored source buffers (not weights)", report.ignored_source, "dim")
