"""Fetch a MusicGen repo from the Hugging Face hub into the cache: resumable, verified, then marked ready.

The hub client (`huggingface_hub`) does every request, so HF_ENDPOINT, HF_TOKEN, HF_HOME and
HF_HUB_OFFLINE mean what they mean everywhere else. We stream each file ourselves rather than
through `hf_hub_download` because that one deletes a partial file when a run dies; here the partial file
stays beside its target and the next run continues it with an HTTP Range request.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from musicgen_cli import config
from musicgen_cli.errors import DownloadError, Interrupted, ModelNotFound
from musicgen_cli.events import NullReporter, Progress, Reporter
from musicgen_cli.store.cache import (
    atomic_write_text,
    audiocraft_cache_dir,
    is_ready,
    mark_ready,
    read_marker,
    safe_child,
    unmark_ready,
)
from musicgen_cli.store.hfcache import hub_cache_dir, link_or_copy
from musicgen_cli.store.layout import (
    AUDIOCRAFT_FILES,
    is_weight_file,
    shape_mismatch,
    traits_from_config,
    wanted_by_transformers,
)
from musicgen_cli.store.manifest import Manifest, ModelEntry, check_repo_id
from musicgen_cli.store.transfer import (  # noqa: F401  (PARTIAL_SUFFIX: callers import it from here)
    PARTIAL_SUFFIX,
    RemoteFile,
    _check_space,
    _fetch,
    _present,
    _still_to_fetch,
    _Tally,
    _verify_all,
)

METADATA_NAME = ".hub-metadata.json"
_OFFLINE = (
    "HF_HUB_OFFLINE is set, so the hub cannot be reached",
    "unset HF_HUB_OFFLINE, or use a local copy: `mgen import-hf-cache` or `mgen import <folder>`",
)


def select_files(siblings: list, include_audiocraft: bool = False, only: tuple[str, ...] | None = None) -> list[RemoteFile]:
    """The repo files mgen needs, from `model_info(..., files_metadata=True).siblings`
    (exactly the files `only` names, when given)."""
    chosen = []
    for sib in siblings:
        name = sib.rfilename
        audiocraft = name in AUDIOCRAFT_FILES
        wanted = name in only if only else wanted_by_transformers(name) or (include_audiocraft and audiocraft)
        if not wanted:
            continue
        lfs = sib.lfs
        size = lfs["size"] if lfs else sib.size
        if size is None:
            raise DownloadError(
                f"the hub gave no size for {name}", "the endpoint may not be a Hugging Face hub; check HF_ENDPOINT"
            )
        chosen.append(
            RemoteFile(
                name=name, size=int(size), sha256=lfs["sha256"] if lfs else None, blob_id=sib.blob_id, audiocraft=audiocraft
            )
        )
    return chosen


def _offline() -> bool:
    from huggingface_hub import constants

    return config.offline() or constants.is_offline_mode()


def _fix_for_token(repo_id: str) -> str:
    return (
        f"accept the model's terms on its hub page ({repo_id}) while logged in, then set HF_TOKEN "
        "or run `huggingface-cli login` (`hf auth login`)"
    )


@contextmanager
def _hub_errors(repo_id: str, endpoint: str, revision: str) -> Iterator[None]:
    """Turn hub-client exceptions into one-line errors that name the fix."""
    import httpx2
    from huggingface_hub import errors as hf

    resume = "run the same command again to resume"
    try:
        yield
    except hf.OfflineModeIsEnabled:
        raise DownloadError(*_OFFLINE) from None
    except hf.GatedRepoError:
        raise DownloadError(f"{repo_id} is a gated repo and the hub refused access", _fix_for_token(repo_id)) from None
    except hf.RevisionNotFoundError:
        raise ModelNotFound(
            f"revision {revision!r} not found in {repo_id}", "pass --revision main or an existing branch, tag or commit"
        ) from None
    except hf.RepositoryNotFoundError:
        raise ModelNotFound(
            f"repo {repo_id} not found on {endpoint}",
            "check the repo id (e.g. facebook/musicgen-small); a private repo also needs HF_TOKEN",
        ) from None
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise DownloadError(f"the hub refused access to {repo_id} (HTTP {status})", _fix_for_token(repo_id)) from None
        raise DownloadError(f"the hub answered HTTP {status} for {repo_id}", f"try again later; {resume}") from None
    except (httpx2.ConnectError, httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError) as exc:
        raise DownloadError(
            f"cannot reach the hub at {endpoint} ({type(exc).__name__})",
            f"check your connection and HF_ENDPOINT, then {resume}; offline, use a cached or imported model",
        ) from None
    except KeyboardInterrupt:
        raise Interrupted("download interrupted; partial files are kept", resume) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DownloadError(
                "the disk filled up during the download", f"free some space or pass --cache-dir on a bigger disk, then {resume}"
            ) from None
        where = f" {exc.filename}" if exc.filename else ""
        reason = (exc.strerror or str(exc)).splitlines()[0]
        raise DownloadError(f"download failed:{where} {reason}", resume) from None


class _ToReporter(logging.Handler):
    """Hub-client warnings (a dropped connection it is resuming) as one reporter line each."""

    def __init__(self, reporter: Reporter):
        super().__init__(logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        lines = record.getMessage().splitlines()
        self.reporter.message(" ".join(line.strip() for line in lines if line.strip()), "warning")


@contextmanager
def _hub_log_to(reporter: Reporter) -> Iterator[None]:
    """Route the hub client's log (its own stderr handler by default) to the reporter meanwhile."""
    logger = logging.getLogger("huggingface_hub")
    saved = logger.handlers[:]
    logger.handlers = [_ToReporter(reporter)]
    try:
        yield
    finally:
        logger.handlers = saved


def _audiocraft_dir(repo_id: str, commit: str) -> Path | None:
    """Where audiocraft's own hf_hub_download(cache_dir=AUDIOCRAFT_CACHE_DIR) looks for its checkpoints."""
    root = audiocraft_cache_dir()
    if root is None:
        return None
    return safe_child(root, "models--" + repo_id.replace("/", "--")) / "snapshots" / commit


def _point_ref(snapshot: Path, revision: str, commit: str) -> None:
    """Name the commit a branch resolves to, as the hub cache does, so offline lookups find it."""
    if revision != commit:
        atomic_write_text(safe_child(snapshot.parent.parent / "refs", revision), commit)


def settle_entry(
    manifest: Manifest, entry: ModelEntry, revision: str | None, folder: Path, reporter: Reporter
) -> ModelEntry:
    """Record what the fetched config.json really is: an unlisted repo gets a user-manifest entry
    (keyed so it never shadows another model); a listed one whose config is not the shape the
    manifest declares is reported in one line and its entry records the real shape."""
    if entry.files:  # listed weights that are no MusicGen: there is no config to read
        return entry
    config = json.loads((folder / "config.json").read_text())
    shape, caps = traits_from_config(config)
    if manifest.entries.get(entry.key) is entry:
        mismatch = shape_mismatch(entry, shape, config)
        if mismatch is None:
            return entry
        reporter.message(mismatch, "warning")
        return manifest.register(dataclasses.replace(entry, shape=shape, capabilities=caps))
    derived = dataclasses.replace(entry, revision=revision, shape=shape, capabilities=caps)
    taken = manifest.entries.get(derived.key)
    if taken is not None and taken.repo_id != derived.repo_id:
        derived = dataclasses.replace(derived, key=derived.folder.lower())
    return manifest.register(derived)


def _metadata_path(manifest: Manifest) -> Path:
    return manifest.root / METADATA_NAME


def stored_metadata(manifest: Manifest) -> dict:
    """{"repo@revision": {commit, files: {name: {size, sha256, blob_id, audiocraft}}}} as last seen on the hub."""
    try:
        data = json.loads(_metadata_path(manifest).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def download_bytes(manifest: Manifest, entry: ModelEntry, metadata: dict | None = None) -> int | None:
    """Bytes `mgen download` fetches for `entry` (transformers files), from the stored hub metadata."""
    metadata = stored_metadata(manifest) if metadata is None else metadata
    seen = metadata.get(f"{entry.repo_id}@{entry.revision or 'main'}")
    if not seen:
        return None
    return sum(f["size"] for f in seen["files"].values() if not f.get("audiocraft"))


def _remember(manifest: Manifest, repo_id: str, revision: str, commit: str, files: list[RemoteFile]) -> None:
    """Keep the hub's file list, so `mgen models list` shows download sizes offline."""
    data = stored_metadata(manifest)
    data[f"{repo_id}@{revision}"] = {"commit": commit, "files": {f.name: dataclasses.asdict(f) for f in files}}
    atomic_write_text(_metadata_path(manifest), json.dumps(data, indent=1, sort_keys=True) + "\n")


def refresh_metadata(manifest: Manifest, entry: ModelEntry, token: str | None = None) -> int:
    """Ask the hub for `entry`'s file list (sizes and checksums) and store it; returns the download size."""
    from huggingface_hub import constants, get_token

    if _offline():
        raise DownloadError(*_OFFLINE)
    revision = entry.revision or "main"
    with _hub_errors(entry.repo_id, constants.ENDPOINT, revision):
        info = _model_info(constants.ENDPOINT, entry.repo_id, revision, token or get_token())
        files = select_files(info.siblings or [], include_audiocraft=True, only=entry.files)
    _remember(manifest, entry.repo_id, revision, info.sha or revision, files)
    return download_bytes(manifest, entry) or 0


def _from_hf_cache(
    repo_id: str, commit: str, files: list[RemoteFile], targets: dict[str, Path], reporter: Reporter
) -> dict[str, tuple[Path, str]]:
    """{name: (cached path, sha256)} for the files still missing that the Hugging Face cache holds intact."""
    from musicgen_cli.store.hfcache import cached_file

    missing = [f for f in files if not f.audiocraft and _present(targets[f.name]) != f.size]
    total, hashed = sum(f.size for f in missing), 0

    def on_bytes(n: int) -> None:  # checking gigabytes of a cached model takes a while: show it
        nonlocal hashed
        hashed += n
        reporter.progress(Progress(task="check HF cache", done=min(hashed, total), total=total, unit="B"))

    found = {}
    for f in missing:
        hit = cached_file(repo_id, commit, f, on_bytes)
        if hit is not None:
            found[f.name] = hit
    return found


def _model_info(endpoint: str, repo_id: str, revision: str, token: str | None):
    from huggingface_hub import HfApi

    try:
        return HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True, token=token)
    except (ValueError, KeyError, TypeError):  # a 200 that is not the hub's JSON: a proxy or a wrong endpoint
        raise DownloadError(
            f"{endpoint} did not answer like a Hugging Face hub", "check HF_ENDPOINT and any proxy settings"
        ) from None


def _usable_files(info, token: str | None, include_audiocraft: bool, reporter: Reporter,
                  only: tuple[str, ...] | None = None) -> list[RemoteFile]:
    """The files to fetch, after checking the repo is a transformers MusicGen we may download
    (or holds every file `only` lists)."""
    files = select_files(info.siblings or [], include_audiocraft, only)
    names = {f.name for f in files}
    if only:
        missing = sorted(set(only) - names)
        if missing:
            raise DownloadError(f"{info.id} has no {', '.join(missing)}", "check the manifest entry's repo_id and files")
        return files
    if "config.json" not in names or not any(is_weight_file(n) for n in names):
        raise DownloadError(
            f"{info.id} has no config.json and model*.safetensors",
            "it is not a transformers MusicGen repo; pick one like facebook/musicgen-small",
        )
    if info.gated and not token:
        raise DownloadError(f"{info.id} is a gated repo and no token is set", _fix_for_token(info.id))
    if include_audiocraft and not names & AUDIOCRAFT_FILES:
        reporter.message(
            f"{info.id} has no audiocraft checkpoints (state_dict.bin); fetching the transformers files only", "warning"
        )
    return files


def download_model(
    manifest: Manifest,
    entry: ModelEntry,
    *,
    reporter: Reporter | None = None,
    revision: str | None = None,
    include_audiocraft: bool = False,
    token: str | None = None,
) -> Path:
    """Download `entry`'s repo into its cache folder, verify every file, then mark the folder ready."""
    from huggingface_hub import constants, get_token, hf_hub_url
    from huggingface_hub.utils import WeakFileLock

    reporter = reporter or NullReporter()
    if not entry.repo_id:
        raise ModelNotFound(f"model {entry.key!r} has no hub repo", f"import it: mgen import <folder> --key {entry.key}")
    repo_id = entry.repo_id
    check_repo_id(repo_id)  # `facebook/..` would reach some other URL of the endpoint
    revision = revision or entry.revision or "main"
    folder = manifest.folder(entry)
    if _offline():
        if is_ready(folder):
            reporter.message(f"{repo_id} is in the cache; HF_HUB_OFFLINE is set, so it was not checked for updates")
            return folder
        raise DownloadError(*_OFFLINE)
    endpoint = constants.ENDPOINT
    token = token or get_token()

    with _hub_errors(repo_id, endpoint, revision), _hub_log_to(reporter):
        reporter.phase("resolve", f"{repo_id}@{revision}")
        info = _model_info(endpoint, repo_id, revision, token)
        commit = info.sha or revision
        files = _usable_files(info, token, include_audiocraft, reporter, entry.files)
        _remember(manifest, repo_id, revision, commit, files)
        folder.parent.mkdir(parents=True, exist_ok=True)
        # A second mgen fetching the same model waits here, then finds it ready below.
        with WeakFileLock(folder.parent / f".{folder.name}.lock"):
            marker = read_marker(folder)
            if is_ready(folder) and marker.get("commit") == commit and {f.name for f in files} <= set(marker.get("files", {})):
                reporter.message(f"{repo_id} is already downloaded at {commit[:12]} in {folder}")
                return folder
            crafted = _audiocraft_dir(repo_id, commit) if include_audiocraft else None
            targets = {f.name: safe_child(crafted if f.audiocraft and crafted else folder, f.name) for f in files}
            reuse = _from_hf_cache(repo_id, commit, files, targets, reporter)
            _check_space(_still_to_fetch([f for f in files if f.name not in reuse], targets))
            unmark_ready(folder)  # its files are about to change

            tally = _Tally(reporter, files)
            reused = sum(f.size for f in files if f.name in reuse)
            for name, (source, _) in reuse.items():
                link_or_copy(source, targets[name])
                tally.advance(name, tally.sizes[name])
            if reuse:
                reporter.message(
                    f"{reused / 1e6:,.1f} MB of {tally.total / 1e6:,.1f} MB ({len(reuse)} files) "
                    f"taken from the Hugging Face cache in {hub_cache_dir()}"
                )
            reporter.phase("download", f"{len(files)} files, {(tally.total - reused) / 1e6:,.1f} MB from {endpoint}")

            def fetch(f: RemoteFile) -> None:
                _fetch(hf_hub_url(repo_id, f.name, revision=commit, endpoint=endpoint), targets[f.name], f, token, tally)

            for f in files:
                if f.name in reuse:
                    continue
                if _present(targets[f.name]) == f.size:
                    tally.advance(f.name, f.size)  # complete from an earlier run; the verify step still checks it
                else:
                    fetch(f)
            reporter.phase("verify", f"sizes and checksums of {len(files)} files")
            record = _verify_all(files, targets, fetch, tally, repo_id, {n: sha for n, (_, sha) in reuse.items()})

            if crafted is not None:
                _point_ref(crafted, revision, commit)
            settle_entry(manifest, entry, revision, folder, reporter)
            marker = {"repo_id": repo_id, "revision": revision, "commit": commit, "files": record, "from_hf_cache": reused}
            mark_ready(folder, marker)
    reporter.message(f"downloaded {repo_id} ({commit[:12]}) to {folder}")
    return folder
