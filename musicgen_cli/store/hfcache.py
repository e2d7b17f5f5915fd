"""The standard Hugging Face cache (HF_HOME/hub, as transformers and audiocraft fill it) as a
source of files: a download takes what it already holds instead of fetching it again.

huggingface_hub resolves the cache location itself (HF_HOME, HF_HUB_CACHE), read at call time
from `constants.HF_HUB_CACHE`. In that cache a snapshot file links to `blobs/<etag>`, and the
etag of an LFS file is its sha256 and of a plain file its git blob id, so every blob can be
checked against what the hub publishes without a request.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from musicgen_cli.arch import MUSICGEN_TYPES
from musicgen_cli.store.layout import wanted_by_transformers
from musicgen_cli.store.transfer import RemoteFile, _verify

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@dataclass(frozen=True)
class CachedRepo:
    """A MusicGen repo in the Hugging Face cache, at the snapshot mgen would use."""

    repo_id: str
    commit: str
    revision: str | None  # the ref naming that commit (main), if any
    snapshot: Path
    files: dict[str, Path]  # the transformers files of the snapshot, resolved to their blobs
    size_on_disk: int  # the whole repo folder, every snapshot


def _repo_dir(repo_id: str) -> Path:
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def link_or_copy(source: Path, target: Path) -> str:
    """Put `source`'s bytes at `target` as a hard link (no extra disk), else a copy; says which."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
        how = "linked"
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        shutil.copyfile(source, tmp)
        how = "copied"
    os.replace(tmp, target)
    return how


def cached_file(repo_id: str, commit: str, remote: RemoteFile, on_bytes=None) -> tuple[Path, str] | None:
    """A file in the Hugging Face cache holding exactly `remote` (same size and hub checksum), with its sha256.

    First the snapshot of that commit, then the blob named by the file's etag (the LFS sha256 or
    the git blob id), which holds the same bytes whichever revision brought it."""
    from huggingface_hub import try_to_load_from_cache

    candidates = []
    found = try_to_load_from_cache(repo_id, remote.name, revision=commit)
    if isinstance(found, str):
        candidates.append(Path(found))
    if remote.sha256 or remote.blob_id:
        candidates.append(_repo_dir(repo_id) / "blobs" / (remote.sha256 or remote.blob_id))
    for path in candidates:
        sha256 = _verify(path.resolve(), remote, on_bytes) if path.is_file() else None
        if sha256 is not None:
            return path.resolve(), sha256
    return None


def remote_from_blob(name: str, blob: Path) -> RemoteFile:
    """What the hub said about a cached file, recovered from its blob's name (its etag)."""
    etag = blob.name
    size = blob.stat().st_size
    return RemoteFile(
        name=name,
        size=size,
        sha256=etag if _SHA256.match(etag) else None,
        blob_id=etag if _SHA1.match(etag) else None,
    )


def _is_musicgen(snapshot: Path) -> bool:
    try:
        return json.loads((snapshot / "config.json").read_text()).get("model_type") in MUSICGEN_TYPES
    except (OSError, ValueError, AttributeError):
        return False


def musicgen_repos() -> list[CachedRepo]:
    """Every MusicGen model repo in the Hugging Face cache, at its `main` snapshot (else the newest)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        return []
    repos = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        by_ref = {ref: rev for rev in repo.revisions for ref in rev.refs}
        revision = "main" if "main" in by_ref else next(iter(sorted(by_ref)), None)
        chosen = by_ref.get(revision) or max(repo.revisions, key=lambda rev: rev.last_modified)
        if not _is_musicgen(chosen.snapshot_path):
            continue
        files = {f.file_name: f.blob_path for f in chosen.files if wanted_by_transformers(f.file_name)}
        repos.append(
            CachedRepo(
                repo_id=repo.repo_id,
                commit=chosen.commit_hash,
                revision=revision,
                snapshot=chosen.snapshot_path,
                files=files,
                size_on_disk=repo.size_on_disk,
            )
        )
    return repos
