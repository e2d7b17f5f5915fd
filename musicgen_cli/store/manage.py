"""Looking after the model cache: what is there and what it costs (list, du), removing models
(rm), clearing what interrupted jobs left (prune), and adopting the Hugging Face cache's
MusicGen repos (import_hf_cache). Library code: results are data, the CLI renders them.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from musicgen_cli.errors import MgenError, ModelNotFound
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.store.cache import (
    folder_size,
    is_ready,
    mark_ready,
    read_marker,
    safe_child,
    unmark_ready,
)
from musicgen_cli.store.hfcache import (
    CachedRepo,
    link_or_copy,
    musicgen_repos,
    remote_from_blob,
)
from musicgen_cli.store.hub import (
    METADATA_NAME,
    download_bytes,
    settle_entry,
    stored_metadata,
)
from musicgen_cli.store.layout import is_weight_file
from musicgen_cli.store.lease import claim_model, is_held, model_in_use
from musicgen_cli.store.manifest import (
    USER_MANIFEST_NAME,
    Manifest,
    ModelEntry,
    derived_entry,
    load_manifest,
)
from musicgen_cli.store.models import STAGING_PREFIX, staging_lock
from musicgen_cli.store.transfer import PARTIAL_SUFFIX, _verify

OFFLOAD_DIR = ".mgen-offload"  # engine.loader.offload_folder puts disk-offloaded weights here
_KEEP = {USER_MANIFEST_NAME, METADATA_NAME, OFFLOAD_DIR}


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()] if path.is_dir() else []


def freed_by_removing(path: Path) -> int:
    """Bytes deleting `path` gives back: files hard-linked elsewhere (the Hugging Face cache) free nothing."""
    return sum(st.st_size for st in (p.stat() for p in _files(path)) if st.st_nlink <= 1)


def _remove(path: Path) -> None:
    if path.is_dir():
        unmark_ready(path)  # an interrupted removal never leaves a folder that looks usable
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def listed_entry(manifest: Manifest, name: str) -> ModelEntry:
    """A manifest key (or the repo id of a listed model); never a derived entry for an unknown repo."""
    if name in manifest.entries:
        return manifest.entries[name]
    for entry in manifest.entries.values():
        if entry.repo_id and entry.repo_id.lower() == name.lower():
            return entry
    manifest.get(name)  # raises with a suggestion for a near miss
    raise ModelNotFound(f"{name!r} is not in the manifest", "see `mgen models list`")


def model_rows(manifest: Manifest) -> list[dict]:
    """One row per manifest entry: cached or not, bytes on disk and to download, capabilities, folder."""
    metadata = stored_metadata(manifest)
    rows = []
    for entry in manifest.entries.values():
        folder = manifest.folder(entry)
        marker = read_marker(folder)
        rows.append(
            {
                "key": entry.key,
                "repo_id": entry.repo_id,
                "revision": entry.revision,
                "commit": marker.get("commit"),
                "shape": entry.shape,
                "cached": manifest.is_cached(entry),
                "size_bytes": folder_size(folder),
                "download_bytes": download_bytes(manifest, entry, metadata) if entry.repo_id else None,
                "folder": str(folder),
                "melody": entry.capabilities.melody,
                "stereo": entry.capabilities.stereo,
                "channels": entry.capabilities.channels,
                "random_weights": entry.random_weights,
                "source": entry.source,
            }
        )
    return rows


@dataclass
class Removed:
    key: str
    folder: str
    bytes_freed: int
    entry_removed: bool  # its user-manifest entry went too
    still_listed: bool  # a shipped key: listed again, as not cached


def remove_model(manifest: Manifest, name: str) -> Removed:
    """Delete a model's folder and its user-manifest entry; refuses while a generation holds it."""
    entry = listed_entry(manifest, name)
    folder = manifest.folder(entry)
    lease = claim_model(folder)
    if lease is None:
        raise MgenError(
            f"model {entry.key!r} is in use by a running generation", "let it finish (or stop it), then run `mgen models rm` again"
        )
    with lease:
        freed = freed_by_removing(folder)
        _remove(folder)
    unlisted = manifest.unregister(entry.key) if entry.source == "user" else False
    still_listed = entry.key in load_manifest(manifest.root).entries  # a shipped entry the user one overrode
    return Removed(entry.key, str(folder), freed, unlisted, still_listed)


def remove_models(manifest: Manifest, names: list[str]) -> list[Removed]:
    """`remove_model` for each name, after checking every name is listed and no model is in use."""
    entries = [listed_entry(manifest, name) for name in names]
    busy = [e.key for e in entries if model_in_use(manifest.folder(e))]
    if busy:
        raise MgenError(
            f"{', '.join(busy)} in use by a running generation; nothing removed", "let it finish (or stop it), then run again"
        )
    return [remove_model(manifest, e.key) for e in entries]


@dataclass
class Leftover:
    kind: str  # partial, lock, staging, orphan, offload
    path: str
    bytes: int

    def to_json(self) -> dict:
        return asdict(self)


def _download_running(root: Path, folder_name: str) -> bool:
    return is_held(root / f".{folder_name}.lock")


def leftovers(manifest: Manifest) -> list[Leftover]:
    """What interrupted jobs left in the cache root; anything a running job holds is left out.

    A ready folder no manifest entry names is kept: it may belong to another manifest (MGEN_MANIFEST)."""
    root = manifest.root
    if not root.is_dir():
        return []
    named = {manifest.folder(e).name for e in manifest.entries.values()}
    found = []
    for path in sorted(root.iterdir()):
        name = path.name
        if name in _KEEP or path.is_symlink():
            continue
        if path.is_dir() and name.startswith(STAGING_PREFIX):
            if not is_held(staging_lock(path)):  # an import in progress holds its staging folder
                found.append(Leftover("staging", str(path), freed_by_removing(path)))
        elif path.is_file() and name.startswith(".") and name.endswith(".lock"):
            if not is_held(path):
                found.append(Leftover("lock", str(path), path.stat().st_size))
        elif path.is_dir() and not name.startswith(".") and not _download_running(root, name):
            partials = sorted(path.rglob(f"*{PARTIAL_SUFFIX}"))
            if not is_ready(path):
                kind = "partial" if name in named or partials else "orphan"
                found.append(Leftover(kind, str(path), freed_by_removing(path)))
            else:
                found += [Leftover("partial", str(p), freed_by_removing(p)) for p in partials]
    offload = root / OFFLOAD_DIR
    if offload.is_dir():
        for path in sorted(offload.iterdir()):
            if not model_in_use(root / path.name):
                found.append(Leftover("offload", str(path), freed_by_removing(path)))
    return found


def prune(manifest: Manifest, *, dry_run: bool = False) -> list[Leftover]:
    """Remove (or with `dry_run` only list) partial downloads, stale locks, abandoned staging
    folders, orphaned folders and offloaded weights of models no run holds."""
    found = leftovers(manifest)
    if not dry_run:
        for item in found:
            _remove(Path(item.path))
    return found


@dataclass
class Usage:
    where: str  # mgen, hf-cache, leftovers
    name: str
    path: str
    bytes: int


def disk_use(manifest: Manifest) -> tuple[list[Usage], int]:
    """Disk use per model folder, leftovers and the Hugging Face cache's MusicGen repos, and the
    total with each hard-linked file counted once."""
    root = manifest.root
    by_folder = {manifest.folder(e).name: e.key for e in manifest.entries.values()}
    rows: list[Usage] = []
    paths: list[Path] = []
    if root.is_dir():
        for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            rows.append(Usage("mgen", by_folder.get(path.name, "(unlisted)"), str(path), folder_size(path)))
            paths.append(path)
    extra = [item for item in leftovers(manifest) if not any(Path(item.path).is_relative_to(p) for p in paths)]
    rows += [Usage("leftovers", item.kind, item.path, item.bytes) for item in extra]
    paths += [Path(item.path) for item in extra]
    for repo in musicgen_repos():
        repo_dir = repo.snapshot.parent.parent
        rows.append(Usage("hf-cache", repo.repo_id, str(repo_dir), repo.size_on_disk))
        paths.append(repo_dir)
    seen: dict[tuple[int, int], int] = {}
    for path in paths:
        for file in _files(path):
            st = file.stat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return rows, sum(seen.values())


@dataclass
class Adopted:
    repo_id: str
    key: str
    commit: str
    status: str  # registered, would register, already cached, incomplete, corrupt
    bytes: int
    folder: str


def _entry_for(manifest: Manifest, repo: CachedRepo) -> ModelEntry:
    for entry in manifest.entries.values():
        if entry.repo_id and entry.repo_id.lower() == repo.repo_id.lower():
            return entry
    return derived_entry(repo.repo_id, revision=repo.revision or "main")


def _adopt(manifest: Manifest, entry: ModelEntry, repo: CachedRepo, reporter: Reporter) -> str:
    """Link one cached snapshot's files into the mgen cache after checking each against its blob name."""
    from huggingface_hub.utils import WeakFileLock

    folder = manifest.folder(entry)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(folder.parent / f".{folder.name}.lock"):
        record = {}
        for name, blob in sorted(repo.files.items()):
            remote = remote_from_blob(name, blob)
            sha256 = _verify(blob, remote)
            if sha256 is None:
                reporter.message(f"{repo.repo_id}: {name} in the Hugging Face cache does not match its checksum", "warning")
                return "corrupt"
            record[name] = {"size": remote.size, "sha256": sha256}
        unmark_ready(folder)
        for name, blob in repo.files.items():
            link_or_copy(blob, safe_child(folder, name))
        settle_entry(manifest, entry, repo.revision or repo.commit, folder, reporter)
        marker = {"repo_id": repo.repo_id, "revision": repo.revision or repo.commit, "commit": repo.commit}
        size = sum(r["size"] for r in record.values())
        mark_ready(folder, {**marker, "files": record, "from_hf_cache": size, "source": "hf-cache"})
    return "registered"


def import_hf_cache(manifest: Manifest, *, dry_run: bool = False, reporter: Reporter | None = None) -> list[Adopted]:
    """Register every MusicGen repo of the Hugging Face cache, its files hard-linked into the mgen cache."""
    reporter = reporter or NullReporter()
    adopted = []
    for repo in musicgen_repos():
        entry = _entry_for(manifest, repo)
        folder = manifest.folder(entry)
        size = sum(blob.stat().st_size for blob in repo.files.values())
        marker = read_marker(folder)
        if "config.json" not in repo.files or not any(is_weight_file(n) for n in repo.files):
            status = "incomplete"
        elif is_ready(folder):
            status = "already cached" if marker.get("commit") in (None, repo.commit) else f"cached at {marker['commit'][:12]}"
        elif dry_run:
            status = "would register"
        else:
            reporter.phase("import", f"{repo.repo_id} ({size / 1e6:,.1f} MB)")
            status = _adopt(manifest, entry, repo, reporter)
            entry = manifest.entries.get(entry.key, entry)
            for listed in manifest.entries.values():  # an unlisted repo may be keyed apart
                if listed.repo_id == repo.repo_id:
                    entry = listed
        adopted.append(Adopted(repo.repo_id, entry.key, repo.commit, status, size, str(folder)))
    return adopted
