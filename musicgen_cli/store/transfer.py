"""Moving one repo file from the hub onto disk: byte counts for the reporter, resumable
partial files, and the checksums that decide whether a file on disk is the file the hub published.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from musicgen_cli.errors import DownloadError
from musicgen_cli.events import Progress, Reporter
from musicgen_cli.store.cache import file_digest

PARTIAL_SUFFIX = ".incomplete"


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


def _verify(path: Path, remote: RemoteFile, on_bytes=None) -> str | None:
    """The file's sha256 when it matches what the hub published, else None."""
    if _present(path) != remote.size:
        return None
    sha256 = file_digest(path, on_bytes=on_bytes)
    if remote.sha256 and sha256 != remote.sha256:
        return None
    # Regular (non-LFS) files carry their git blob id, a sha1 over a "blob <size>\0" header.
    if not remote.sha256 and remote.blob_id and file_digest(path, "sha1", f"blob {remote.size}\0".encode()) != remote.blob_id:
        return None
    return sha256


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


def _still_to_fetch(files: list[RemoteFile], targets: dict[str, Path]) -> dict[Path, int]:
    """Bytes each destination folder still needs, counting complete and partial files already there."""
    needs: dict[Path, int] = {}
    for f in files:
        target = targets[f.name]
        have = f.size if _present(target) == f.size else _present(_partial_path(target, f))
        needs[target.parent] = needs.get(target.parent, 0) + f.size - have
    return needs


def _verify_all(
    files: list[RemoteFile], targets: dict[str, Path], fetch, tally: _Tally, repo_id: str, known: dict[str, str] | None = None
) -> dict:
    """{name: {size, sha256}} once every file checks out; a bad file is fetched again once.

    `known` holds sha256s already checked this run (files linked from the Hugging Face cache)."""
    record = {}
    hashed = 0

    def on_bytes(n: int) -> None:  # hashing gigabytes takes a while: show it
        nonlocal hashed
        hashed = min(hashed + n, tally.total)
        tally.reporter.progress(Progress(task="verify", done=hashed, total=tally.total, unit="B"))

    for f in files:
        sha256 = (known or {}).get(f.name)
        if sha256 is not None:
            on_bytes(f.size)
        else:
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


