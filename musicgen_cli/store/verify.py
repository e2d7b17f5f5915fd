"""`mgen models verify`: re-hash a cached model against the sha256 recorded when it was
downloaded, imported or built, and with `repair` fetch again only the files that failed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musicgen_cli.errors import MgenError
from musicgen_cli.events import NullReporter, Progress, Reporter
from musicgen_cli.store.cache import (
    file_digest,
    is_ready,
    mark_ready,
    read_marker,
    unmark_ready,
)
from musicgen_cli.store.layout import AUDIOCRAFT_FILES
from musicgen_cli.store.manifest import Manifest, ModelEntry
from musicgen_cli.store.transfer import RemoteFile, _present

GOOD, CORRUPT, MISSING, UNRECORDED = "good", "corrupt", "missing", "unrecorded"


@dataclass
class FileCheck:
    name: str
    status: str  # good, corrupt, missing, or unrecorded (no checksum to compare with)
    size: int
    path: str
    repaired: bool = False


@dataclass
class ModelCheck:
    key: str
    folder: str
    files: list[FileCheck] = field(default_factory=list)
    problem: str | None = None  # a model-level problem: not cached, nothing recorded, cannot repair
    bytes_hashed: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem is None and all(f.status == GOOD for f in self.files)

    @property
    def bad(self) -> list[FileCheck]:
        return [f for f in self.files if f.status in (CORRUPT, MISSING)]

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _recorded(marker: dict) -> dict[str, dict] | None:
    files = marker.get("files")
    if isinstance(files, dict):
        return files
    if isinstance(files, list):  # imports before checksums were recorded: names only
        return {name: {} for name in files}
    return None


def _file_path(manifest: Manifest, entry: ModelEntry, marker: dict, name: str) -> Path:
    folder = manifest.folder(entry)
    path = folder / name
    if name in AUDIOCRAFT_FILES and not path.exists() and marker.get("repo_id") and marker.get("commit"):
        from musicgen_cli.store.hub import _audiocraft_dir

        crafted = _audiocraft_dir(marker["repo_id"], marker["commit"])
        if crafted is not None and (crafted / name).exists():
            return crafted / name
    return path


def _check_file(path: Path, record: dict, on_bytes) -> str:
    if not path.is_file():
        return MISSING
    if not record.get("sha256"):
        return UNRECORDED
    if _present(path) != record.get("size"):
        return CORRUPT  # a size difference needs no hashing
    return GOOD if file_digest(path, on_bytes=on_bytes) == record["sha256"] else CORRUPT


def verify_model(manifest: Manifest, entry: ModelEntry, *, reporter: Reporter | None = None) -> ModelCheck:
    """Every recorded file of `entry`'s folder hashed and compared with its recorded sha256."""
    reporter = reporter or NullReporter()
    folder = manifest.folder(entry)
    check = ModelCheck(key=entry.key, folder=str(folder))
    if not is_ready(folder):
        check.problem = "not cached"
        return check
    marker = read_marker(folder)
    recorded = _recorded(marker)
    if not recorded:
        check.problem = "no checksums were recorded for it"
        return check
    total = sum(r.get("size", 0) for r in recorded.values())
    start = time.perf_counter()

    def on_bytes(n: int) -> None:
        check.bytes_hashed += n
        reporter.progress(Progress(task=f"verify {entry.key}", done=min(check.bytes_hashed, total), total=total, unit="B"))

    for name, record in sorted(recorded.items()):
        path = _file_path(manifest, entry, marker, name)
        status = _check_file(path, record, on_bytes)
        check.files.append(FileCheck(name=name, status=status, size=record.get("size", 0), path=str(path)))
    check.seconds = time.perf_counter() - start
    return check


def _repair_from_hub(manifest: Manifest, marker: dict, bad: list[FileCheck], recorded: dict, reporter: Reporter) -> None:
    """Fetch the bad files again at the recorded commit: from the Hugging Face cache when it holds
    them intact, else from the hub; nothing else is requested."""
    from huggingface_hub import constants, get_token, hf_hub_url

    from musicgen_cli.store.hfcache import cached_file, link_or_copy
    from musicgen_cli.store.hub import _hub_errors, _hub_log_to, _offline
    from musicgen_cli.store.transfer import _fetch, _Tally, _verify

    repo_id, commit = marker["repo_id"], marker["commit"]
    remotes = [RemoteFile(name=f.name, size=recorded[f.name]["size"], sha256=recorded[f.name]["sha256"]) for f in bad]
    tally = _Tally(reporter, remotes)
    with _hub_errors(repo_id, constants.ENDPOINT, commit), _hub_log_to(reporter):
        for remote, found in zip(remotes, bad):
            target = Path(found.path)
            target.unlink(missing_ok=True)
            hit = cached_file(repo_id, commit, remote)
            if hit is not None:
                link_or_copy(hit[0], target)
                tally.advance(remote.name, remote.size)
            else:
                if _offline():
                    raise MgenError(
                        f"{remote.name} of {repo_id} needs fetching again but HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE"
                    )
                url = hf_hub_url(repo_id, remote.name, revision=commit, endpoint=constants.ENDPOINT)
                _fetch(url, target, remote, get_token(), tally)
            found.repaired = _verify(target, remote) is not None


def _repair_from_source(marker: dict, bad: list[FileCheck], recorded: dict) -> None:
    """An imported model: copy the bad files again from the folder it was imported from, if unchanged."""
    source = Path(marker.get("imported_from") or "")
    for found in bad:
        original = source / found.name
        if original.is_file() and file_digest(original) == recorded[found.name]["sha256"]:
            shutil.copyfile(original, found.path)
            found.repaired = file_digest(Path(found.path)) == recorded[found.name]["sha256"]


def repair_model(
    manifest: Manifest, entry: ModelEntry, check: ModelCheck, *, reporter: Reporter | None = None
) -> ModelCheck:
    """Replace the corrupt and missing files `check` found; the folder stays unready until all are good."""
    reporter = reporter or NullReporter()
    bad = check.bad
    if not bad or check.problem:
        return check
    folder = manifest.folder(entry)
    marker = read_marker(folder)
    recorded = _recorded(marker) or {}
    if marker.get("random_weights"):
        from musicgen_cli.store.models import build_random_model

        shutil.rmtree(folder)
        build_random_model(manifest, entry)
        for found in bad:
            found.repaired = True
        return check
    unmark_ready(folder)  # damaged: nothing may load it until every file is good again
    reporter.phase("repair", f"{len(bad)} file(s) of {entry.key}")
    if marker.get("repo_id") and marker.get("commit"):
        _repair_from_hub(manifest, marker, bad, recorded, reporter)
    else:
        _repair_from_source(marker, bad, recorded)
    for found in bad:
        if found.repaired:
            found.status = GOOD
    if check.bad:
        fix = "run `mgen models rm` and download or import it again"
        check.problem = f"could not repair {', '.join(f.name for f in check.bad)} ({fix})"
        return check
    mark_ready(folder, marker)
    return check
