"""One obvious place that turns a model name into a ready local folder.

`model_folder` resolves a manifest key or repo id, builds the random-weight test models on
first use, downloads hub models when allowed, and otherwise says exactly how to get them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from musicgen_cli import config
from musicgen_cli.errors import ModelNotFound
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.store.cache import hash_files, mark_ready, safe_child
from musicgen_cli.store.integrity import check_model_folder
from musicgen_cli.store.lease import claim_path
from musicgen_cli.store.manifest import Capabilities, Manifest, ModelEntry

STAGING_PREFIX = ".import-"


def build_random_model(manifest: Manifest, entry: ModelEntry) -> Path:
    """Write a random-weight model (entry.builder names the variant) and mark it ready."""
    from musicgen_cli.arch import quiet_transformers
    from musicgen_cli.store.random_models import ModelSpec, write_model_folder

    folder = manifest.folder(entry)
    with quiet_transformers():
        write_model_folder(folder, ModelSpec(shape=entry.shape or "tiny", variant=entry.builder))
    mark_ready(folder, {"key": entry.key, "random_weights": True, "builder": entry.builder, "files": hash_files(folder)})
    return folder


def model_folder(
    manifest: Manifest,
    entry: ModelEntry,
    *,
    download: bool = True,
    reporter: Reporter | None = None,
) -> Path:
    """The ready folder for `entry`, building or downloading it when allowed."""
    folder = manifest.folder(entry)
    if manifest.is_cached(entry):
        check_model_folder(folder, repair_command(manifest, entry), managed=True)
        return folder
    if entry.random_weights:
        (reporter or NullReporter()).message(f"building random-weight test model {entry.key!r} (makes noise)")
        return build_random_model(manifest, entry)
    fetch = f"mgen download {entry.repo_id or entry.key}"
    if not entry.repo_id:
        raise ModelNotFound(f"model {entry.key!r} is not in {manifest.root}", f"import it: mgen import <folder> --key {entry.key}")
    if not download or config.offline():
        raise ModelNotFound(f"model {entry.key!r} is not downloaded", f"run: {fetch}")
    from musicgen_cli.store.hub import download_model

    download_model(manifest, entry, reporter=reporter)
    return folder


def staging_lock(staging: Path) -> Path:
    """The lock an import holds on its staging folder while it writes there (beside it, not in it)."""
    return staging.with_name(staging.name + ".lock")
def repair_command(manifest: Manifest, entry: ModelEntry) -> str:
    """The command that puts a damaged cached model right."""
    if entry.repo_id or entry.random_weights:
        return f"mgen download {entry.key if entry.key in manifest.entries else entry.repo_id}"
    return f"import it again: mgen import <folder> --key {entry.key} (or mgen import-audiocraft ... --key {entry.key} --force)"


@contextmanager
def staged_model_folder(manifest: Manifest, key: str) -> Iterator[Path]:
    """A scratch folder in the cache root that replaces <cache>/<key> only if the block succeeds,
    so an interrupted import never leaves a half-written model where a model is expected."""
    target = safe_child(manifest.root, key)
    manifest.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{key}.", dir=manifest.root))
    # Held until the block ends, so `mgen models prune` tells a running import from an abandoned one.
    lock = staging_lock(staging)
    busy = claim_path(lock)
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)  # an unready leftover: a partial download or an interrupted import
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        lock.unlink(missing_ok=True)
        if busy is not None:
            busy.release()


def register_local_model(
    manifest: Manifest, key: str, *, shape: str | None, capabilities: Capabilities, description: str, marker: dict
) -> ModelEntry:
    """Register an imported folder under `key` in the user manifest, then mark it ready (last)."""
    entry = manifest.register(
        ModelEntry(
            key=key,
            folder=key,
            repo_id=None,
            revision=None,
            shape=shape,
            capabilities=capabilities,
            description=description,
            source="user",
        )
    )
    folder = manifest.folder(entry)
    # Checksums of what was written, so `mgen models verify` can tell a damaged copy later.
    mark_ready(folder, {"key": key, **marker, "files": hash_files(folder)})
    return entry
