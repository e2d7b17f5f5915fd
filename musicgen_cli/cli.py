"""The `mgen` command line: parse options, call the engine, render with Rich."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import MgenError

app = typer.Typer(
    name="mgen",
    help="Run MusicGen text-to-music models on the hardware you own: plans memory, shows progress, writes WAVs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

CacheDirOpt = typer.Option(None, "--cache-dir", envvar="MGEN_CACHE_DIR", help="Model cache root (default: model-cache/ beside manifest.json).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"mgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Run MusicGen text-to-music models on the hardware you own.

    Start with `mgen models`, `mgen download small`, `mgen memory-plan --size small`,
    then `mgen generate "jazz trio"`.
    """


@app.command("models")
def models_cmd(cache_dir: Optional[Path] = CacheDirOpt, as_json: bool = JsonOpt) -> None:
    """List the manifest's models: key, repo id, cached or not, size on disk, capabilities."""
    from .cache import folder_size
    from .manifest import load_manifest

    manifest = load_manifest(cache_dir)
    rows = []
    for entry in manifest.entries.values():
        folder = manifest.folder(entry)
        caps = entry.capabilities
        rows.append(
            {
                "key": entry.key,
                "repo_id": entry.repo_id,
                "cached": manifest.is_cached(entry),
                "size_bytes": folder_size(folder),
                "folder": str(folder),
                "melody": caps.melody,
                "stereo": caps.stereo,
                "channels": caps.channels,
                "random_weights": entry.random_weights,
                "source": entry.source,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Models (cache: {manifest.root})")
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
            _human_bytes(row["size_bytes"]) if row["size_bytes"] else "-",
            ", ".join(caps),
        )
    console.print(table)


@app.command("import-audiocraft")
def import_audiocraft_cmd(
    paths: list[Path] = typer.Argument(..., help="Folder holding state_dict.bin and compression_state_dict.bin, or those files."),
    key: str = typer.Option(..., "--key", help="Manifest key to register the converted model under."),
    base: Optional[str] = typer.Option(
        None, "--base", help="Model lending the T5 text encoder and tokenizer: small|medium|large|melody|<key> (default: small, melody for melody checkpoints)."
    ),
    apply_proposed: bool = typer.Option(
        False, "--apply-proposed", envvar="APPLY_PROPOSED", help="Apply high-confidence fuzzy name matches too (default: only propose them)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing model with the same key."),
    check: bool = typer.Option(True, "--check/--no-check", help="After writing, load the model and generate a few frames."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Convert an audiocraft MusicGen checkpoint (state_dict.bin + compression_state_dict.bin) into the cache."""
    from .audiocraft import ImportRefused, import_audiocraft
    from .importview import render_match_report

    try:
        result = import_audiocraft(
            paths, key, base=base, apply_proposed=apply_proposed, force=force, check=check, cache_dir=cache_dir
        )
    except ImportRefused as exc:
        if as_json:
            print(json.dumps({"imported": False, "error": str(exc), "report": exc.report.to_json()}, indent=2))
        else:
            render_match_report(err_console, exc.report, from_base=base)
        raise
    if as_json:
        summary = {"imported": True, "key": key, "folder": str(result.folder), "base": result.base, "notes": result.notes}
        print(json.dumps({**summary, "audio_shape": result.audio_shape, "report": result.report.to_json()}, indent=2))
        return
    render_match_report(console, result.report, from_base=result.base)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    arch = result.arch
    console.print(
        f"[green]imported[/] {key!r} -> {result.folder}\n"
        f"  decoder: {arch.layers} layers x {arch.hidden} hidden, {arch.heads} heads, {arch.codebooks} codebooks of {arch.card}, "
        f"{'stereo' if arch.channels == 2 else 'mono'}{', melody' if arch.melody else ''}; T5 and tokenizer from {result.base!r}"
    )
    if result.audio_shape:
        console.print(f"  smoke check: generated audio {list(result.audio_shape)}")


def main() -> None:
    """Console-script entry: user errors become one line and a non-zero exit, no traceback."""
    try:
        app()
    except MgenError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
