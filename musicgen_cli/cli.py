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


@app.command("download")
def download_cmd(
    model: Optional[str] = typer.Argument(None, help="Manifest key (e.g. small) or hub repo id (e.g. facebook/musicgen-small)."),
    model_key: Optional[str] = typer.Option(None, "--model-key", help="Same as the MODEL argument."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit (default: the manifest's, else main)."),
    include_audiocraft: bool = typer.Option(
        False, "--include-audiocraft", help="Also fetch audiocraft's state_dict.bin files (into AUDIOCRAFT_CACHE_DIR if set)."
    ),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Download a model from the Hugging Face hub into the cache (resumable, checksum-verified)."""
    from .hub import download_model
    from .manifest import load_manifest
    from .ui import RichReporter

    if model and model_key and model != model_key:
        raise MgenError(f"two models given: {model!r} and --model-key {model_key!r}", "pass just one")
    name = model or model_key
    if not name:
        raise MgenError("no model given", "run `mgen download small` or `mgen download facebook/musicgen-small`")
    manifest = load_manifest(cache_dir)
    entry = manifest.get(name)
    with RichReporter(console) as reporter:
        if entry.random_weights:
            from .models import model_folder

            folder = model_folder(manifest, entry, reporter=reporter)  # built locally, nothing to download
        else:
            folder = download_model(manifest, entry, reporter=reporter, revision=revision, include_audiocraft=include_audiocraft)
    console.print(f"[green]ready:[/] {folder}", highlight=False)


@app.command("import")
def import_cmd(
    folder: Path = typer.Argument(..., help="A folder with config.json, model.safetensors and tokenizer files."),
    key: str = typer.Option(..., "--key", help="The manifest key to register it under (also its cache folder name)."),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Check a local MusicGen folder (config, weight names and shapes, tokenizer) and copy it into the cache."""
    from .importer import import_model
    from .manifest import load_manifest
    from .ui import RichReporter

    manifest = load_manifest(cache_dir)
    with RichReporter(console) as reporter:
        entry = import_model(manifest, folder, key, reporter=reporter)
    console.print(f"[green]imported:[/] {entry.key} -> {manifest.folder(entry)}", highlight=False)


def main() -> None:
    """Console-script entry: user errors become one line and a non-zero exit, no traceback."""
    try:
        app()
    except MgenError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
