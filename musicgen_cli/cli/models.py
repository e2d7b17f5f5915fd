"""Model commands: list, download, import (transformers folders and audiocraft checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from musicgen_cli import config
from musicgen_cli.cli.options import (
    CacheDirOpt,
    JsonOpt,
    console,
    err_console,
)
from musicgen_cli.errors import MgenError


def models_cmd(cache_dir: Optional[Path] = CacheDirOpt, as_json: bool = JsonOpt) -> None:
    """List the manifest's models: key, repo id, cached or not, size on disk, capabilities."""
    from musicgen_cli.store.cache import folder_size
    from musicgen_cli.store.manifest import load_manifest

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
    from musicgen_cli.ui.tables import models_table

    console.print(models_table(rows, manifest.root))


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
    from musicgen_cli.store.hub import download_model
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.ui.reporter import RichReporter

    if model and model_key and model != model_key:
        raise MgenError(f"two models given: {model!r} and --model-key {model_key!r}", "pass just one")
    name = model or model_key
    if not name:
        raise MgenError("no model given", "run `mgen download small` or `mgen download facebook/musicgen-small`")
    manifest = load_manifest(cache_dir)
    entry = manifest.get(name)
    with RichReporter(console) as reporter:
        if entry.random_weights:
            from musicgen_cli.store.models import model_folder

            folder = model_folder(manifest, entry, reporter=reporter)  # built locally, nothing to download
        else:
            folder = download_model(manifest, entry, reporter=reporter, revision=revision, include_audiocraft=include_audiocraft)
    console.print(f"[green]ready:[/] {folder}", highlight=False)


def import_cmd(
    folder: Path = typer.Argument(..., help="A folder with config.json, model.safetensors and tokenizer files."),
    key: str = typer.Option(..., "--key", help="The manifest key to register it under (also its cache folder name)."),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Check a local MusicGen folder (config, weight names and shapes, tokenizer) and copy it into the cache."""
    from musicgen_cli.importing.folder import import_model
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.ui.reporter import RichReporter

    manifest = load_manifest(cache_dir)
    with RichReporter(console) as reporter:
        entry = import_model(manifest, folder, key, reporter=reporter)
    console.print(f"[green]imported:[/] {entry.key} -> {manifest.folder(entry)}", highlight=False)


def import_audiocraft_cmd(
    paths: list[Path] = typer.Argument(..., help="Folder holding state_dict.bin and compression_state_dict.bin, or those files."),
    key: str = typer.Option(..., "--key", help="Manifest key to register the converted model under."),
    base: Optional[str] = typer.Option(
        None, "--base", help="Model lending the T5 text encoder and tokenizer: small|medium|large|melody|<key> (default: small, melody for melody checkpoints)."
    ),
    apply_proposed: bool = typer.Option(
        False, "--apply-proposed", help="Apply high-confidence fuzzy name matches too (default: only propose them; APPLY_PROPOSED=1 sets it)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing model with the same key."),
    check: bool = typer.Option(True, "--check/--no-check", help="After writing, load the model and generate a few frames."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Convert an audiocraft MusicGen checkpoint (state_dict.bin + compression_state_dict.bin) into the cache."""
    from musicgen_cli.importing.audiocraft import ImportRefused, import_audiocraft
    from musicgen_cli.ui.importview import render_match_report

    try:
        result = import_audiocraft(
            paths, key, base=base, apply_proposed=apply_proposed or config.apply_proposed(), force=force, check=check, cache_dir=cache_dir
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
