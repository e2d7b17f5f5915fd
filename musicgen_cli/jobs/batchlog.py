"""What a batch has done, on disk: per-rank result logs, the merged manifest, run state.

Each process appends one JSON line per finished item to its own `manifest.rank-N.jsonl`,
flushed and fsynced, so killing it loses at most the items in flight and no two processes
ever write the same file. Rank 0 folds every rank file (leftovers of killed runs included)
into `manifest.jsonl` atomically, keeping the latest record per item id, then removes the
rank files: a line is never lost (it is in a rank file or in the manifest) nor duplicated.

Beside them, `.mgen-batch/` holds the current run (`run.json`) and one status file per rank,
which rank 0's progress display reads.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musicgen_cli.errors import OutputExists
from musicgen_cli.jobs.batchfile import BatchItem
from musicgen_cli.jobs.outputs import sidecar_path
from musicgen_cli.store.cache import atomic_write_text

MANIFEST = "manifest.jsonl"
STATE_DIR = ".mgen-batch"


def rank_file(out_dir: Path, rank: int) -> Path:
    return Path(out_dir) / f"manifest.rank-{rank}.jsonl"


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file; a torn last line (a killed write) is skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "id" in record:
            records.append(record)
    return records


class RankLog:
    """Append-only result log of one process."""

    def __init__(self, out_dir: Path, rank: int) -> None:
        self.path = rank_file(out_dir, rank)
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def collect(out_dir: Path) -> tuple[dict[str, dict], list[Path]]:
    """The latest record of every item id over manifest.jsonl and all rank files, and those rank files."""
    out_dir = Path(out_dir)
    rank_files = sorted(out_dir.glob("manifest.rank-*.jsonl"))
    latest: dict[str, dict] = {}
    for path in [out_dir / MANIFEST, *rank_files]:
        for record in read_jsonl(path):
            old = latest.get(record["id"])
            if old is None or record.get("finished_at", 0) >= old.get("finished_at", 0):
                latest[record["id"]] = record
    return latest, rank_files


def fold(out_dir: Path, order: list[str]) -> dict[str, dict]:
    """Merge the rank files into manifest.jsonl (ids in `order` first) and remove them.

    Only one process may call this, while no other process appends.
    """
    latest, rank_files = collect(out_dir)
    position = {item_id: n for n, item_id in enumerate(order)}
    ids = sorted(latest, key=lambda i: (position.get(i, len(position)), i))
    if rank_files or not (Path(out_dir) / MANIFEST).exists():
        text = "".join(json.dumps(latest[i], default=str) + "\n" for i in ids)
        atomic_write_text(Path(out_dir) / MANIFEST, text)
        for path in rank_files:
            path.unlink(missing_ok=True)
    return latest


def verified_outputs(item: BatchItem, out_dir: Path) -> dict | None:
    """The first sidecar of `item` when all its WAVs and sidecars exist and belong to it, else None."""
    import soundfile as sf

    first = None
    for path in item.audio_paths(out_dir):
        try:
            meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
            info = sf.info(str(path))
        except (OSError, ValueError, RuntimeError):
            return None
        if meta.get("batch_item") != item.id or meta.get("prompt") != item.prompt:
            return None
        if info.frames <= 0 or info.samplerate != meta.get("sample_rate"):
            return None
        first = first or meta
    return first


@dataclass
class WorkPlan:
    todo: list[BatchItem]
    recovered: list[tuple[BatchItem, dict]]  # outputs that verify but have no ok record, with their sidecar
    skipped: int  # items already done (or failed, without --retry-failed)


def _changed(item: BatchItem, meta: dict, expect: dict) -> str | None:
    """The first setting a take on disk was made with that this item no longer asks for."""
    made = meta.get("settings")
    if isinstance(made, dict):
        for key, value in asdict(item.settings).items():
            value = str(value) if isinstance(value, Path) else value
            if key != "seed" and key in made and made[key] != value:
                return f"{key} {made[key]} (now {value})"
    if "item_seed" in meta and meta["item_seed"] != item.seed:
        return f"seed {meta['item_seed']} (now {item.seed})"
    model = meta.get("model")
    if isinstance(model, dict) and model.get("folder"):
        names = {model.get("key"), model.get("repo_id"), model.get("folder")}
        if item.model not in names and str(Path(item.model).resolve()) != model["folder"]:
            return f"model {model.get('key') or model['folder']} (now {item.model})"
    written = meta.get("audio") if isinstance(meta.get("audio"), dict) else {}
    for key, value in expect.items():
        if key in written and written[key] != value:
            return f"{key} {written[key]} (now {value})"
    return None


def disk_state(item: BatchItem, out_dir: Path, expect: dict) -> tuple[dict | None, str | None]:
    """(sidecar, None) when the item's take is on disk as asked now; (None, why) when files at its
    names are something else (another take, other settings, not mgen's); (None, None) otherwise."""
    meta = verified_outputs(item, out_dir)
    if meta is not None:
        change = _changed(item, meta, expect)
        return (None, f"made with {change}") if change else (meta, None)
    for path in item.audio_paths(out_dir):
        side = sidecar_path(path)
        if not path.exists() and not side.exists():
            continue
        try:
            found = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None, f"{path.name} is not from this batch"
        if not isinstance(found, dict) or found.get("batch_item") != item.id or found.get("prompt") != item.prompt:
            return None, f"{path.name} holds another prompt's take"
        change = _changed(item, found, expect)
        if change:
            return None, f"made with {change}"
    return None, None


def plan_work(
    items: list[BatchItem], records: dict[str, dict], out_dir: Path, retry_failed: bool, *, expect: dict | None = None, overwrite: bool = False
) -> WorkPlan:
    """Which items to generate: never ones whose outputs verify, failed ones only when asked.

    Files at an item's names that are not its take as asked now (other settings, another prompt)
    are replaced only with `overwrite`; otherwise nothing starts and OutputExists says which.
    """
    todo, recovered, skipped, clashes = [], [], 0, []
    for item in items:
        record = records.get(item.id)
        meta, clash = disk_state(item, out_dir, expect or {})
        if meta is not None:
            skipped += 1
            if not record or record.get("status") != "ok":
                recovered.append((item, meta))
        elif clash and not overwrite:
            clashes.append(f"{item.id}: {clash}")
        elif record and record.get("status") == "failed" and not retry_failed and not clash:
            skipped += 1
        else:
            todo.append(item)
    if clashes:
        more = f"; and {len(clashes) - 3} more" if len(clashes) > 3 else ""
        raise OutputExists(Path(out_dir), f"holds {len(clashes)} item(s) made otherwise: {'; '.join(clashes[:3])}{more}")
    return WorkPlan(todo, recovered, skipped)


def item_record(
    item: BatchItem,
    out_dir: Path,
    *,
    status: str,
    previous: dict | None,
    run: str,
    rank: int,
    seed: int | None = None,
    batch: dict | None = None,
    timings: dict | None = None,
    error: str | None = None,
    recovered: bool = False,
) -> dict:
    """One manifest line. `seed` is the seed the clip was actually generated with."""
    files = [p.relative_to(Path(out_dir).resolve()).as_posix() for p in item.audio_paths(out_dir)] if status == "ok" else []
    return {
        "id": item.id,
        "line": item.line,
        "prompt": item.prompt,
        "model": item.model,
        "status": status,
        "files": files,
        "seed": seed,
        "item_seed": item.seed,
        "duration_s": item.settings.duration,
        "num_samples": item.settings.num_samples,
        "batch": batch,
        "timings_s": timings or {},
        "error": error,
        "attempt": (previous or {}).get("attempt", 0) + (0 if recovered else 1),
        "recovered": recovered,
        "run": run,
        "rank": rank,
        "finished_at": time.time(),
    }


# -- run state and progress --------------------------------------------------------------------


@dataclass
class RankStatus:
    rank: int
    phase: str = "starting"
    detail: str = ""
    done: int = 0
    failed: int = 0
    assigned: int = 0
    updated: float = field(default_factory=time.time)
    kind: str = "rank"  # "worker" for a Ray actor, whose process may restart under the same number
    running: int = 0  # items in the pass being generated now
    pid: int | None = None  # of a Ray worker's process, on `host`
    host: str = ""


def state_dir(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR


def write_run(out_dir: Path, run: str, pending: int, skipped: int, processes: int) -> None:
    info = {"run": run, "started": time.time(), "pending": pending, "skipped": skipped, "processes": processes}
    atomic_write_text(state_dir(out_dir) / "run.json", json.dumps(info))


def read_run(out_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir(out_dir) / "run.json").read_text())
    except (OSError, ValueError):
        return None


def write_status(out_dir: Path, status: RankStatus) -> None:
    status.updated = time.time()
    atomic_write_text(state_dir(out_dir) / f"status.rank-{status.rank}.json", json.dumps(asdict(status)))


def clear_state(out_dir: Path, remove: bool = False) -> None:
    folder = state_dir(out_dir)
    for path in folder.glob("*.json"):
        path.unlink(missing_ok=True)
    if remove and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


@dataclass
class BatchSnapshot:
    """The whole run as rank 0 sees it from the files: counts over all ranks, speed, ETA."""

    pending: int
    skipped: int
    done: int
    failed: int
    clips: int
    elapsed_s: float
    ranks: list[RankStatus]

    @property
    def running(self) -> int:
        return sum(r.running for r in self.ranks)

    @property
    def clips_per_min(self) -> float:
        return 60.0 * self.clips / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        finished = self.done + self.failed
        left = self.pending - finished
        if finished == 0:
            return None
        return left * self.elapsed_s / finished


def snapshot(out_dir: Path) -> BatchSnapshot | None:
    """None until rank 0 has planned the run."""
    run = read_run(out_dir)
    if run is None:
        return None
    done = failed = clips = 0
    for path in Path(out_dir).glob("manifest.rank-*.jsonl"):
        for record in read_jsonl(path):
            if record.get("run") != run["run"] or record.get("recovered"):
                continue
            if record.get("status") == "ok":
                done += 1
                clips += len(record.get("files") or ())
            else:
                failed += 1
    ranks = []
    for path in sorted(state_dir(out_dir).glob("status.rank-*.json")):
        try:
            ranks.append(RankStatus(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    ranks.sort(key=lambda r: r.rank)
    return BatchSnapshot(run["pending"], run["skipped"], done, failed, clips, time.time() - run["started"], ranks)
