"""Model commands: the `models` group (list, verify, rm, prune, du), download, import, import-hf-cache."""

from __future__ import annotations

import dataclasses
import json
import sys
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

models_app = typer.Typer(
    help="List, verify, remove and clean up cached models (plain `mgen models` lists them).",
    no_args_is_help=False,
)
KeysArg = typer.Argument(None, help="Manifest keys (e.g. small) or repo ids of listed models.")


def _emit(data) -> None:
    print(json.dumps(data, indent=2))


@models_app.callback(invoke_without_command=True)
def models_cmd(ctx: typer.Context, cache_dir: Optional[Path] = CacheDirOpt, as_json: bool = JsonOpt) -> None:
    """List the manifest's models: key, repo id, cached or not, size on disk, capabilities."""
    if ctx.invoked_subcommand is None:
        list_cmd(cache_dir=cache_dir, as_json=as_json, refresh=False)


@models_app.command("list")
def list_cmd(
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
    refresh: bool = typer.Option(False, "--refresh", help="Ask the hub for each model's file sizes (kept for offline use)."),
) -> None:
    """Key, repo, revision, cached, size on disk, size to download, capabilities and folder of each model."""
    from musicgen_cli.store.cache import cache_location
    from musicgen_cli.store.hub import refresh_metadata
    from musicgen_cli.store.manage import model_rows
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.ui.models_views import render_models

    manifest = load_manifest(cache_dir)
    if refresh:
        failed: dict[str, list[str]] = {}  # one line per reason (offline is one reason, not eight)
        tried = [entry for entry in manifest.entries.values() if entry.repo_id]
        for entry in tried:
            try:
                refresh_metadata(manifest, entry)
            except MgenError as exc:
                failed.setdefault(str(exc), []).append(entry.key)
                if len(failed[str(exc)]) == len(tried):  # nothing could be refreshed: an error, not a table
                    raise
        for reason, keys in failed.items():
            err_console.print(f"warning: not refreshed ({', '.join(keys)}): {reason}", markup=False, highlight=False, soft_wrap=True)
    rows = model_rows(manifest)
    if as_json:
        _emit(rows)
        return
    render_models(console, rows, *cache_location(cache_dir))


@models_app.command("verify")
def verify_cmd(
    keys: Optional[list[str]] = KeysArg,
    all_models: bool = typer.Option(False, "--all", help="Every cached model."),
    repair: bool = typer.Option(False, "--repair", help="Fetch again only the files that are corrupt or missing."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Re-hash every file of cached models against the sha256 recorded at download or import; exit 1 on any problem."""
    from musicgen_cli.store.manage import listed_entry
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.store.verify import repair_model, verify_model
    from musicgen_cli.ui.models_views import render_verify
    from musicgen_cli.ui.reporter import RichReporter

    if bool(keys) == all_models:
        raise MgenError("name the models to verify, or pass --all (not both)", "e.g. `mgen models verify small` or `--all`")
    manifest = load_manifest(cache_dir)
    if all_models:
        entries = [e for e in manifest.entries.values() if manifest.is_cached(e)]
    else:
        entries = [listed_entry(manifest, key) for key in keys]
    checks = []
    with RichReporter(err_console) as reporter:
        for entry in entries:
            check = verify_model(manifest, entry, reporter=reporter)
            if repair and check.bad:
                check = repair_model(manifest, entry, check, reporter=reporter)
            checks.append(check)
    if as_json:
        _emit([c.to_json() for c in checks])
    else:
        render_verify(console, checks)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@models_app.command("rm")
def rm_cmd(
    keys: list[str] = typer.Argument(..., help="Manifest keys (e.g. small) of the models to remove."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove models' folders and user-manifest entries (shipped keys stay listed, as not cached)."""
    from musicgen_cli.store.manage import freed_by_removing, listed_entry, remove_models
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.ui.models_views import render_removed
    from musicgen_cli.ui.panel import human_bytes

    manifest = load_manifest(cache_dir)
    entries = [listed_entry(manifest, key) for key in keys]  # all known before anything is removed
    if not yes:
        if as_json or not sys.stdin.isatty():
            raise MgenError("rm needs confirmation", "pass --yes to remove without asking")
        folders = [manifest.folder(e) for e in entries]
        freed = sum(freed_by_removing(f) for f in folders)
        typer.confirm(f"remove {', '.join(e.key for e in entries)} ({human_bytes(freed)})?", abort=True)
    removed = remove_models(manifest, [entry.key for entry in entries])
    if as_json:
        _emit([dataclasses.asdict(r) for r in removed])
    else:
        render_removed(console, removed)


@models_app.command("prune")
def prune_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove partial downloads, stale locks, staging folders of interrupted imports and orphaned folders."""
    from musicgen_cli.store.manage import prune
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.ui.models_views import render_leftovers

    found = prune(load_manifest(cache_dir), dry_run=dry_run)
    if as_json:
        _emit({"dry_run": dry_run, "bytes_freed": sum(i.bytes for i in found), "items": [i.to_json() for i in found]})
    else:
        render_leftovers(console, found, dry_run)


@models_app.command("du")
def du_cmd(cache_dir: Optional[Path] = CacheDirOpt, as_json: bool = JsonOpt) -> None:
    """Disk use of every model folder, leftovers and the Hugging Face cache's MusicGen repos, with a total."""
    from musicgen_cli.store.manage import disk_use
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.ui.models_views import render_usage

    rows, total = disk_use(load_manifest(cache_dir))
    if as_json:
        _emit({"rows": [dataclasses.asdict(r) for r in rows], "total_bytes": total})
    else:
        render_usage(console, rows, total)


def import_hf_cache_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list the MusicGen repos found."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Register every MusicGen repo of the Hugging Face cache (HF_HOME), hard-linking its files (no second copy)."""
    from musicgen_cli.store.manage import import_hf_cache
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.ui.models_views import render_adopted
    from musicgen_cli.ui.reporter import RichReporter

    manifest = load_manifest(cache_dir)
    with RichReporter(err_console) as reporter:
        adopted = import_hf_cache(manifest, dry_run=dry_run, reporter=reporter)
    if as_json:
        _emit([dataclasses.asdict(a) for a in adopted])
    else:
        render_adopted(console, adopted)


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
    _imported(result, key, as_json)


def _imported(result, key: str, as_json: bool) -> None:
    """What an audiocraft import made: the match report, the decoder's shape, the smoke check."""
    if as_json:
        summary = {"imported": True, "key": key, "folder": str(result.folder), "base": result.base, "notes": result.notes}
        print(json.dumps({**summary, "audio_shape": result.audio_shape, "report": result.report.to_json()}, indent=2))
        return
    from musicgen_cli.ui.importview import render_match_report

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
