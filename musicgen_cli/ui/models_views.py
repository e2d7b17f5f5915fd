"""Rich tables for `mgen models` and its subcommands (the data comes from store.manage / store.verify)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from musicgen_cli.store.manage import Adopted, Leftover, Removed, Usage
from musicgen_cli.store.verify import CORRUPT, GOOD, MISSING, ModelCheck
from musicgen_cli.units import human_bytes

_STATUS_STYLE = {GOOD: "green", CORRUPT: "bold red", MISSING: "bold red"}


def _size(n: int | None, none: str = "-") -> str:
    return human_bytes(n) if n else none


def render_models(console: Console, rows: list[dict], root, origin: str) -> None:
    console.print(f"cache: {root} ({origin})", highlight=False, soft_wrap=True)
    table = Table(title="Models")
    for col in ("key", "repo id", "revision", "cached", "on disk", "download", "capabilities", "folder"):
        table.add_column(col, overflow="fold")
    unknown = False
    for row in rows:
        caps = ["stereo" if row["stereo"] else "mono"]
        caps += ["melody"] if row["melody"] else []
        caps += ["[yellow]random weights[/]"] if row["random_weights"] else []
        if row["repo_id"] is None:
            download = "(built locally)" if row["random_weights"] else "(imported)"
        else:
            download = _size(row["download_bytes"], "?")
            unknown |= row["download_bytes"] is None
        table.add_row(
            row["key"],
            row["repo_id"] or "-",
            (row["commit"] or row["revision"] or "-")[:12],
            "[green]yes[/]" if row["cached"] else "no",
            _size(row["size_bytes"]),
            download,
            ", ".join(caps),
            Path(row["folder"]).name if Path(row["folder"]).parent == Path(root) else row["folder"],
        )
    console.print(table)
    if unknown:
        console.print("[dim]download ?: run `mgen models list --refresh` to ask the hub for sizes (kept for offline use)[/]")


def render_verify(console: Console, checks: list[ModelCheck]) -> None:
    table = Table(title="Verify")
    for col in ("model", "file", "size", "status"):
        table.add_column(col, overflow="fold")
    for check in checks:
        if check.problem and not check.files:
            table.add_row(check.key, "-", "-", f"[bold red]{check.problem}[/]")
        for f in check.files:
            style = _STATUS_STYLE.get(f.status, "yellow")
            status = f"[{style}]{f.status}[/]" + (" [green](repaired)[/]" if f.repaired else "")
            table.add_row(check.key, f.name, human_bytes(f.size), status)
        if check.problem and check.files:
            table.add_row(check.key, "-", "-", f"[bold red]{check.problem}[/]")
    console.print(table)
    hashed = sum(c.bytes_hashed for c in checks)
    seconds = sum(c.seconds for c in checks)
    if hashed and seconds > 0:
        console.print(f"hashed {human_bytes(hashed)} in {seconds:.1f} s ({hashed / seconds / 1e6:,.0f} MB/s)", highlight=False)


def render_removed(console: Console, removed: list[Removed]) -> None:
    for r in removed:
        note = " (shipped key: still listed, not cached)" if r.still_listed else ""
        console.print(f"[green]removed[/] {r.key}: {r.folder}, {human_bytes(r.bytes_freed)} freed{note}", highlight=False)


def render_leftovers(console: Console, found: list[Leftover], dry_run: bool) -> None:
    total = sum(item.bytes for item in found)
    if not found:
        console.print("nothing to prune")
        return
    table = Table(title="Would remove" if dry_run else "Removed")
    for col in ("kind", "path", "size"):
        table.add_column(col, overflow="fold")
    for item in found:
        table.add_row(item.kind, item.path, human_bytes(item.bytes))
    console.print(table)
    console.print(f"{'would free' if dry_run else 'freed'} {human_bytes(total)}", highlight=False)


def render_usage(console: Console, rows: list[Usage], total: int) -> None:
    table = Table(title="Disk use")
    for col in ("where", "model", "path", "size"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row.where, row.name, row.path, human_bytes(row.bytes))
    console.print(table)
    console.print(f"total {human_bytes(total)} (hard-linked files counted once)", highlight=False)


def render_adopted(console: Console, adopted: list[Adopted]) -> None:
    if not adopted:
        console.print("no MusicGen repos in the Hugging Face cache")
        return
    table = Table(title="MusicGen repos in the Hugging Face cache")
    for col in ("repo id", "key", "commit", "size", "status", "folder"):
        table.add_column(col, overflow="fold")
    for a in adopted:
        style = "green" if a.status == "registered" else "yellow" if a.status in ("corrupt", "incomplete") else ""
        table.add_row(a.repo_id, a.key, a.commit[:12], human_bytes(a.bytes), f"[{style}]{a.status}[/]" if style else a.status, a.folder)
    console.print(table)
