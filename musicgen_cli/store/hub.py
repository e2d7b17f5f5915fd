"""Fetch a MusicGen repo from the Hugging Face hub into the cache: resumable, verified, then marked ready.

The hub client (`huggingface_hub`) does every request, so HF_ENDPOINT, HF_TOKEN, HF_HOME and
HF_HUB_OFFLINE mean what they mean everywhere else. We stream each file ourselves rather than
through `hf_hub_download` because that one deletes a partial file when a run dies; here the partial file
stays beside its target and the next run continues it with an HTTP Range request.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
from musicgen_cli.store.layout import (
    AUDIOCRAFT_FILES,
    is_weight_file,
    traits_from_config,
    wanted_by_transformers,
)
from musicgen_cli.store.manifest import Manifest, ModelEntry, check_repo_id

PARTIAL_SUFFIX = ".incomplete"
_OFFLINE = (
    "HF_HUB_OFFLINE is set, so the hub cannot be reached",
    "unset HF_HUB_OFFLINE or import a local copy with `mgen import`",
)
_HASH_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class RemoteFile:
    """One repo file as the hub describes it; `sha256` only for LFS files, `blob_id` (git sha1) otherwise."""

    name: str
    size: int
    sha256: str | None = None
    blob_id: str | None = None
    audiocraft: bool = False

    @property
    def tag(self) -> str:
        """A short content id, so a partial file from another revision is never continued."""
        return (self.sha256 or self.blob_id or "nohash")[:16]


def select_files(siblings: list, include_audiocraft: bool = False) -> list[RemoteFile]:
    """The repo files mgen needs, from `model_info(..., files_metadata=True).siblings`."""
    chosen = []
    for sib in siblings:
        name = sib.rfilename
        audiocraft = name in AUDIOCRAFT_FILES
        if not (wanted_by_transformers(name) or (include_audiocraft and audiocraft)):
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


class _Tally:
    """Byte counts for each file and for the whole download, sent to the reporter."""

    def __init__(self, reporter: Reporter, files: list[RemoteFile]):
        self.reporter = reporter
        self.sizes = {f.name: f.size for f in files}
        self.done = dict.fromkeys(self.sizes, 0)
        self.total = sum(self.sizes.values())

    def advance(self, name: str, nbytes: int) -> None:
        self.done[name] += nbytes
        # The overall task first, so a front end that lists tasks as they appear shows it on top.
        self.reporter.progress(Progress(task="total", done=sum(self.done.values()), total=self.total, unit="B"))
        self.reporter.progress(Progress(task=name, done=self.done[name], total=self.sizes[name], unit="B"))

    def reset(self, name: str) -> None:
        self.advance(name, -self.done[name])


def _partial_path(target: Path, remote: RemoteFile) -> Path:
    return target.with_name(f".{target.name}.{remote.tag}{PARTIAL_SUFFIX}")


def _present(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _fetch(url: str, target: Path, remote: RemoteFile, token: str | None, tally: _Tally) -> None:
    """Stream one file into its partial file (continuing it with Range), then move it into place."""
    from huggingface_hub.utils import build_hf_headers

    partial = _partial_path(target, remote)
    have = _present(partial)
    if have > remote.size:
        partial.unlink()
        have = 0
    headers = build_hf_headers(token=token)
    # Byte ranges must count the file's own bytes, never a compressed stream's.
    headers["Accept-Encoding"] = "identity"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "r+b" if have else "wb") as fh:
        fh.seek(have)
        have = _stream_into(fh, url, headers, have, remote, tally)
    if have != remote.size:
        raise OSError(errno.EIO, f"the hub sent {have:,} of {remote.size:,} bytes", str(target))
    os.replace(partial, target)


FLUSH_EVERY = 1024 * 1024  # what a kill may cost of a transfer; the hub client's own writer holds 10 MiB
_RETRIES = 5


def _stream_into(fh, url: str, headers: dict, have: int, remote: RemoteFile, tally: _Tally) -> int:
    """Append the file's bytes from `have` on, flushing every MiB, resuming dropped connections
    (up to _RETRIES times in a row without progress). Returns the bytes now in the file.

    Every received byte reaches the file before an error leaves here, so Ctrl-C or a dropped
    connection keeps all of it for the next run's Range request.
    """
    import time

    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

    tally.advance(remote.name, have - tally.done[remote.name])
    retries = _RETRIES
    while True:
        request = dict(headers, **({"Range": f"bytes={have}-"} if have else {}))
        unflushed = 0
        try:
            with http_stream_backoff(
                "GET", url, headers=request, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT,
                retry_on_exceptions=(), retry_on_status_codes=(408, 429),
            ) as response:
                hf_raise_for_status(response)
                if have and response.status_code == 200:  # the server ignored Range: start over
                    fh.seek(0)
                    fh.truncate()
                    tally.reset(remote.name)
                    have = 0
                for chunk in response.iter_bytes():
                    fh.write(chunk)
                    have += len(chunk)
                    unflushed += len(chunk)
                    if unflushed >= FLUSH_EVERY:
                        fh.flush()
                        unflushed = 0
                    tally.advance(remote.name, len(chunk))
                    retries = _RETRIES
            return have
        except (httpx2.ConnectError, httpx2.TimeoutException, httpx2.RemoteProtocolError) as exc:
            if retries <= 0:
                raise
            retries -= 1
            tally.reporter.message(
                f"connection dropped after {have:,} bytes of {remote.name} ({type(exc).__name__}); resuming", "warning"
            )
            time.sleep(1)
        finally:
            fh.flush()


def _digest(path: Path, algorithm: str = "sha256", prefix: bytes = b"", on_bytes=None) -> str:
    digest = hashlib.new(algorithm, prefix)
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def _verify(path: Path, remote: RemoteFile, on_bytes=None) -> str | None:
    """The file's sha256 when it matches what the hub published, else None."""
    if _present(path) != remote.size:
        return None
    sha256 = _digest(path, on_bytes=on_bytes)
    if remote.sha256 and sha256 != remote.sha256:
        return None
    # Regular (non-LFS) files carry their git blob id, a sha1 over a "blob <size>\0" header.
    if not remote.sha256 and remote.blob_id and _digest(path, "sha1", f"blob {remote.size}\0".encode()) != remote.blob_id:
        return None
    return sha256


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


def _check_space(needs: dict[Path, int]) -> None:
    """Refuse to start when a destination's disk lacks room for what is still to fetch."""
    for folder, need in needs.items():
        probe = folder
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if need > free:
            gib = 1024**3
            raise DownloadError(
                f"not enough disk space in {probe}: need {need / gib:.2f} GiB, {free / gib:.2f} GiB free",
                "free some space or pass --cache-dir on a bigger disk",
            )


def _register(manifest: Manifest, entry: ModelEntry, revision: str, folder: Path) -> ModelEntry:
    """Add an unlisted repo to the user manifest, keyed so it never shadows another model."""
    shape, caps = traits_from_config(json.loads((folder / "config.json").read_text()))
    derived = dataclasses.replace(entry, revision=revision, shape=shape, capabilities=caps)
    taken = manifest.entries.get(derived.key)
    if taken is not None and taken.repo_id != derived.repo_id:
        derived = dataclasses.replace(derived, key=derived.folder.lower())
    return manifest.register(derived)


def _still_to_fetch(files: list[RemoteFile], targets: dict[str, Path]) -> dict[Path, int]:
    """Bytes each destination folder still needs, counting complete and partial files already there."""
    needs: dict[Path, int] = {}
    for f in files:
        target = targets[f.name]
        have = f.size if _present(target) == f.size else _present(_partial_path(target, f))
        needs[target.parent] = needs.get(target.parent, 0) + f.size - have
    return needs


def _verify_all(files: list[RemoteFile], targets: dict[str, Path], fetch, tally: _Tally, repo_id: str) -> dict:
    """{name: {size, sha256}} once every file checks out; a bad file is fetched again once."""
    record = {}
    hashed = 0

    def on_bytes(n: int) -> None:  # hashing gigabytes takes a while: show it
        nonlocal hashed
        hashed = min(hashed + n, tally.total)
        tally.reporter.progress(Progress(task="verify", done=hashed, total=tally.total, unit="B"))

    for f in files:
        sha256 = _verify(targets[f.name], f, on_bytes)
        if sha256 is None:
            tally.reporter.message(f"{f.name} failed its checksum; fetching it again", "warning")
            targets[f.name].unlink(missing_ok=True)
            tally.reset(f.name)
            fetch(f)
            sha256 = _verify(targets[f.name], f)
        if sha256 is None:
            targets[f.name].unlink(missing_ok=True)
            raise DownloadError(
                f"{f.name} from {repo_id} failed verification twice", "check for a proxy or mirror altering files, then run again"
            )
        record[f.name] = {"size": f.size, "sha256": sha256}
    return record


def _model_info(endpoint: str, repo_id: str, revision: str, token: str | None):
    from huggingface_hub import HfApi

    try:
        return HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True, token=token)
    except (ValueError, KeyError, TypeError):  # a 200 that is not the hub's JSON: a proxy or a wrong endpoint
        raise DownloadError(
            f"{endpoint} did not answer like a Hugging Face hub", "check HF_ENDPOINT and any proxy settings"
        ) from None


def _usable_files(info, token: str | None, include_audiocraft: bool, reporter: Reporter) -> list[RemoteFile]:
    """The files to fetch, after checking the repo is a transformers MusicGen we may download."""
    files = select_files(info.siblings or [], include_audiocraft)
    names = {f.name for f in files}
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
        files = _usable_files(info, token, include_audiocraft, reporter)
        folder.parent.mkdir(parents=True, exist_ok=True)
        # A second mgen fetching the same model waits here, then finds it ready below.
        with WeakFileLock(folder.parent / f".{folder.name}.lock"):
            marker = read_marker(folder)
            if is_ready(folder) and marker.get("commit") == commit and {f.name for f in files} <= set(marker.get("files", {})):
                reporter.message(f"{repo_id} is already downloaded at {commit[:12]} in {folder}")
                return folder
            crafted = _audiocraft_dir(repo_id, commit) if include_audiocraft else None
            targets = {f.name: safe_child(crafted if f.audiocraft and crafted else folder, f.name) for f in files}
            _check_space(_still_to_fetch(files, targets))
            unmark_ready(folder)  # its files are about to change

            tally = _Tally(reporter, files)
            reporter.phase("download", f"{len(files)} files, {tally.total / 1e6:,.1f} MB from {endpoint}")

            def fetch(f: RemoteFile) -> None:
                _fetch(hf_hub_url(repo_id, f.name, revision=commit, endpoint=endpoint), targets[f.name], f, token, tally)

            for f in files:
                if _present(targets[f.name]) == f.size:
                    tally.advance(f.name, f.size)  # complete from an earlier run; the verify step still checks it
                else:
                    fetch(f)
            reporter.phase("verify", f"sizes and checksums of {len(files)} files")
            record = _verify_all(files, targets, fetch, tally, repo_id)

            if crafted is not None:
                _point_ref(crafted, revision, commit)
            if manifest.entries.get(entry.key) is not entry:
                _register(manifest, entry, revision, folder)
            mark_ready(folder, {"repo_id": repo_id, "revision": revision, "commit": commit, "files": record})
    reporter.message(f"downloaded {repo_id} ({commit[:12]}) to {folder}")
    return folder
