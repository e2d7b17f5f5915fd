"""`mgen batch --ray`: one batch file over a Ray cluster, its output written by this process alone.

Ray places one worker actor per GPU (`num_gpus=1`), or one per group of CPUs where the cluster
has none. A worker plans memory for the machine it runs on, loads a model once and generates
passes of items with it; it sends the clips and their sidecars back through the object store
and never touches the output folder. This process (the driver) owns the folder as a local
batch does: the lock, the clash checks, the result log, the manifest and the clip+sidecar
pairs, with the same names, levels and formats, so the files are those of a local `mgen batch`
of the same file and seeds, and a driver killed mid-batch resumes from its log, with or
without `--ray`.

A pass whose worker dies (its process killed, its node gone, Ray's memory monitor) goes back
into the queue for another worker; Ray restarts the dead one. Files are written only for
passes that came back, so nothing is lost or written twice. Passes share one model and one
set of settings; a worker keeps its model while that model has passes left and takes another
only when it runs out, so it loads each model at most once (unless a death puts passes of a
model back when only workers that let it go are left).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import ray
from ray.exceptions import (
    NodeDiedError,
    OutOfMemoryError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)

from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.errors import MgenError
from musicgen_cli.jobs import batchlog
from musicgen_cli.jobs.batch import (
    BatchOptions,
    BatchSummary,
    RankReporter,
    describe_error,
    item_extra,
    item_request,
    load_for,
    log_recovered,
    open_folder,
    render_batch,
    resolve_for,
    summarize,
    written_as,
)
from musicgen_cli.jobs.batchfile import BatchItem, by_group, make_batches
from musicgen_cli.jobs.lock import FolderLock
from musicgen_cli.jobs.request import Request
from musicgen_cli.jobs.run import Rendered, rendered_clips, write

MAX_DEATHS = 3  # workers a pass may lose before its items are recorded as failed
MAX_RESTARTS = 4  # times Ray brings back one worker's process
STATUS_EVERY_S = 1.0
LOST = (RayActorError, OutOfMemoryError, WorkerCrashedError, NodeDiedError)  # the worker, not the item, failed


@dataclass(frozen=True)
class Cluster:
    """Where the workers run and how many there are."""

    address: str | None = None  # None: a Ray instance started here; "auto": the one running here; else its address
    workers: int | None = None  # None: one per GPU, or one per node where the cluster has no GPU


@dataclass
class Shipped:
    """One item's clips, each with its sidecar record, on their way from a worker to the driver."""

    item_id: str
    rendered: list[Rendered]
    seed: int
    batch: dict
    timings: dict
    error: str | None


def worker_shape(resources: dict, node_cpus: list[int], workers: int | None, cpu: bool) -> tuple[int, dict]:
    """How many workers to start and the resources each asks Ray for."""
    gpus = 0 if cpu else int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus:
        count = min(workers or gpus, gpus)
        return count, {"num_gpus": 1, "num_cpus": max(1, cpus // gpus)}
    if workers is None:  # one worker a node, each as large as the smallest node
        return max(1, len(node_cpus)), {"num_cpus": max(1, min(node_cpus or [cpus]))}
    return workers, {"num_cpus": max(1, cpus // workers)}


class _StatusReporter(RankReporter):
    """A worker's Reporter: keeps its phase in memory, where the driver's status calls read it."""

    def __init__(self, status: batchlog.RankStatus) -> None:
        super().__init__(Path(), status)

    def flush(self, force: bool = True) -> None:
        pass


@ray.remote(concurrency_groups={"status": 1})
class BatchWorker:
    """One Ray worker: a model loaded by the plan for this machine, and passes generated with it."""

    def __init__(self, options: BatchOptions, threads: int) -> None:
        from musicgen_cli.planning.hardware import configure_threads

        configure_threads(threads, None)
        self.options = options
        self.status = batchlog.RankStatus(rank=0, phase="idle", kind="worker", pid=os.getpid(), host=socket.gethostname())
        self.reporter = _StatusReporter(self.status)
        self.mg = None
        self.model: str | None = None
        self.fit = 1
        self.loads: dict[str, int] = {}

    def load(self, model: str, settings: list[GenerateSettings]) -> int:
        """Load `model` (freeing the one held) by the plan of its largest pass; returns that pass's size."""
        from musicgen_cli.planning.hardware import probe, simulate

        if self.mg is not None:
            self.mg.close()
            self.mg = None
        resolved = resolve_for(model, self.options)  # built or downloaded into this machine's cache
        machine = probe(self.options.cache_dir)
        machine = simulate(machine, no_gpu=True) if self.options.cpu else machine
        self.mg, self.fit = load_for(settings, resolved, machine, self.options, self.reporter)
        self.model = model
        self.loads[model] = self.loads.get(model, 0) + 1
        self.reporter.phase("loaded", model)
        return self.fit

    def render(self, batch: list[BatchItem]) -> list[Shipped]:
        """Generate one pass (in passes this machine fits, if it fits fewer) and ship each item."""
        worker = {
            "pid": self.status.pid, "host": self.status.host, "node": ray.get_runtime_context().get_node_id(),
            "model_loads": self.loads[self.model],
        }
        shipped = []
        for start in range(0, len(batch), self.fit):
            for made in render_batch(self.mg, batch[start : start + self.fit]):
                rendered, timings = [], {}
                if made.result is not None:
                    extra = {**item_extra(made.item, made.batch), "ray_worker": worker}
                    request = Request(prompts=(made.item.prompt,), settings=made.result.settings, model=made.item.model, extra=extra)
                    rendered = rendered_clips(made.result, self.mg, request)
                    timings = {"load": self.mg.loaded.load_seconds, **made.result.timings}
                shipped.append(Shipped(made.item.id, rendered, made.seed, made.batch, timings, made.error))
        self.reporter.phase("idle")
        return shipped

    @ray.method(concurrency_group="status")
    def state(self) -> dict:
        """What the worker does now (answered while it loads or generates)."""
        return asdict(self.status)


@contextmanager
def _connected(address: str | None) -> Iterator[None]:
    """This process as a Ray driver: joined to `address`, or to a Ray instance it starts (None)."""
    if ray.is_initialized():  # the caller (a test, a notebook) connected already
        yield
        return
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = {None: "started on this machine", "auto": "joined from this machine (`ray start`)"}.get(address, f"at {address}")
        raise MgenError(f"no Ray cluster {where}: {exc}", "start one with `ray start --head`, or check --ray's address") from None
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class _Model:
    items: list[BatchItem]
    passes: deque | None = None  # cut once the first worker has planned how many items a pass holds
    done: bool = False  # its items failed to load: nothing more to do


@dataclass
class _Slot:
    actor: object
    status: batchlog.RankStatus
    ready: bool = False
    model: str | None = None
    let_go: set[str] = field(default_factory=set)  # models this process loaded and freed for another
    job: tuple | None = None  # ("load", model) or ("render", model, pass)
    asking: bool = False  # a state call in flight
    asked: float = 0.0
    failures: int = 0
    gone: bool = False


class _Driver:
    """Hands passes to workers, writes what comes back, and keeps the status files current."""

    def __init__(self, out_dir: Path, options: BatchOptions, log: batchlog.RankLog, records: dict, run: str, slots: list[_Slot]):
        self.out_dir = out_dir
        self.options = options
        self.log = log
        self.records = records
        self.run_id = run
        self.slots = slots
        self.models: dict[str, _Model] = {}
        self.calls: dict = {}  # object ref -> (slot, kind, payload)
        self.deaths: dict[str, int] = {}  # by a pass's first item
        self.left = 0
        self.written = 0.0

    def run(self, todo: list[BatchItem]) -> None:
        for item in by_group(todo):
            self.models.setdefault(item.model, _Model([])).items.append(item)
        self.left = len(todo)
        while self.left:
            for slot in self.slots:
                if slot.ready and slot.job is None and not slot.gone:
                    self._assign(slot)
            self._ask_states()
            if not any(kind != "state" for _, kind, _ in self.calls.values()) and not any(s.asking for s in self.slots):
                raise MgenError(
                    f"{self.left} item(s) could not be generated: no Ray worker is left to take them",
                    "check the cluster (`ray status`) and run the same command again; finished items are kept",
                )
            ready, _ = ray.wait(list(self.calls), num_returns=1, timeout=STATUS_EVERY_S)
            if ready:
                ready, _ = ray.wait(list(self.calls), num_returns=len(self.calls), timeout=0)
            for ref in ready:
                self._finish(ref)
            self._write_states()
        self._write_states(force=True)

    # -- choosing work ---------------------------------------------------------------------------

    def _assign(self, slot: _Slot) -> None:
        model = self.models.get(slot.model) if slot.model else None
        if model is not None and model.passes:
            batch = model.passes.popleft()
            self._call(slot, ("render", slot.model, batch), slot.actor.render.remote(batch))
            slot.status.running = len(batch)
            slot.status.assigned += len(batch)
            slot.status.phase, slot.status.detail = "generate", _pass_name(batch)
            return
        name = self._choose(slot)
        if name is not None:
            settings = [it.settings for it in self.models[name].items]
            self._call(slot, ("load", name), slot.actor.load.remote(name, settings))
            slot.status.phase, slot.status.detail = "load", name
        else:
            slot.status.phase, slot.status.detail = "idle", ""

    def _left_of(self, name: str) -> int:
        """Passes of a model not yet handed out (an estimate until the first worker has planned it)."""
        model = self.models[name]
        if model.done:
            return 0
        if model.passes is None:
            return math.ceil(len(model.items) / max(1, self.options.max_batch))
        return len(model.passes)

    def _choose(self, slot: _Slot) -> str | None:
        """The model this worker loads next: the one with most passes left per worker holding it,
        one it has not let go of before unless no other worker holds or loads that one."""
        best, score = None, None
        for name in self.models:
            holders = [s for s in self.slots if not s.gone and s is not slot and (s.model == name or (s.job and s.job[:2] == ("load", name)))]
            loading = sum(1 for s in holders if s.job and s.job[0] == "load")
            left = self._left_of(name) - loading
            if left <= 0 or (name in slot.let_go and holders):
                continue
            key = (name not in slot.let_go, left / (1 + len(holders)))
            if score is None or key > score:
                best, score = name, key
        return best

    # -- results ---------------------------------------------------------------------------------

    def _call(self, slot: _Slot, job: tuple, ref) -> None:
        slot.job = job
        self.calls[ref] = (slot, job[0], job)

    def _finish(self, ref) -> None:
        slot, kind, job = self.calls.pop(ref)
        if kind == "state":
            slot.asking = False
        else:
            slot.job = None
            slot.status.running = 0
        try:
            value = ray.get(ref)
        except LOST:
            self._lost(slot, job)
            return
        except RayTaskError as exc:  # raised inside the worker: a model that cannot load or be used
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            self._failed(slot, job, describe_error(cause))
            return
        if kind == "state":
            self._took_state(slot, value)
        elif kind == "load":
            self._loaded(slot, job[1], value)
        else:
            by_id = {item.id: item for item in job[2]}
            for shipped in value:
                self._write(slot, by_id[shipped.item_id], shipped)

    def _loaded(self, slot: _Slot, name: str, fit: int) -> None:
        if slot.model and slot.model != name:
            slot.let_go.add(slot.model)
        slot.model = name
        model = self.models[name]
        if model.passes is None and not model.done:
            model.passes = deque(make_batches(model.items, fit))

    def _failed(self, slot: _Slot, job: tuple, error: str) -> None:
        if job[0] == "load":
            slot.model = None  # the worker freed its old model before trying
            model = self.models[job[1]]
            if model.passes is None and not model.done:  # no worker could load it: its items fail, as in a local batch
                model.done = True
                for item in model.items:
                    self._record(slot, item, "failed", error=error)
        elif job[0] == "render":
            for item in job[2]:
                self._record(slot, item, "failed", error=error)

    def _lost(self, slot: _Slot, job: tuple) -> None:
        """The worker's process died: whatever it held is gone; its pass goes back into the queue."""
        slot.ready, slot.model, slot.let_go = False, None, set()
        slot.failures += 1
        slot.status.phase, slot.status.detail = "restarting", "its process died"
        if slot.failures > 2 * MAX_RESTARTS:
            slot.gone = True
            slot.status.phase = "gone"
        if job[0] == "render":
            batch = job[2]
            deaths = self.deaths[batch[0].id] = self.deaths.get(batch[0].id, 0) + 1
            if deaths >= MAX_DEATHS:
                for item in batch:
                    error = f"its worker died {deaths} times while generating it (killed, out of memory or node lost)"
                    self._record(slot, item, "failed", error=error)
            else:
                self.models[job[1]].passes.appendleft(batch)

    def _write(self, slot: _Slot, item: BatchItem, shipped: Shipped) -> None:
        if shipped.error is not None:
            self._record(slot, item, "failed", error=shipped.error, seed=shipped.seed, batch=shipped.batch)
            return
        t0 = time.perf_counter()
        try:
            write(shipped.rendered, item_request(item, self.out_dir, self.options))
        except Exception as exc:  # a full disk or bad path fails this item only
            self._record(slot, item, "failed", error=describe_error(exc), seed=shipped.seed, batch=shipped.batch)
            return
        timings = {**shipped.timings, "write": time.perf_counter() - t0}
        self._record(slot, item, "ok", seed=shipped.seed, batch=shipped.batch, timings=timings)

    def _record(self, slot: _Slot, item: BatchItem, status: str, **fields) -> None:
        self.log.append(batchlog.item_record(
            item, self.out_dir, status=status, previous=self.records.get(item.id), run=self.run_id, rank=slot.status.rank, **fields,
        ))
        self.left -= 1
        if status == "ok":
            slot.status.done += 1
        else:
            slot.status.failed += 1

    # -- status ----------------------------------------------------------------------------------

    def _ask_states(self) -> None:
        now = time.time()
        for slot in self.slots:
            if not slot.asking and not slot.gone and (not slot.ready or now - slot.asked >= STATUS_EVERY_S):
                slot.asking, slot.asked = True, now
                self.calls[slot.actor.state.remote()] = (slot, "state", ("state",))

    def _took_state(self, slot: _Slot, state: dict) -> None:
        slot.ready = True
        slot.status.pid, slot.status.host = state["pid"], state["host"]
        if slot.job and slot.job[0] == "render" and state["phase"] in ("generate", "decode audio"):
            slot.status.phase, slot.status.detail = state["phase"], f"{_pass_name(slot.job[2])}  {state['detail']}"


    def _write_states(self, force: bool = False) -> None:
        if force or time.time() - self.written >= STATUS_EVERY_S:
            self.written = time.time()
            for slot in self.slots:
                batchlog.write_status(self.out_dir, slot.status)


def _pass_name(batch: list[BatchItem]) -> str:
    """The first item of a pass, and how many more it holds."""
    return batch[0].id + (f" +{len(batch) - 1}" if len(batch) > 1 else "")


def _start_workers(cluster: Cluster, options: BatchOptions) -> list[_Slot]:
    node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")]
    count, ask = worker_shape(ray.cluster_resources(), node_cpus, cluster.workers, options.cpu)
    remote = BatchWorker.options(**ask, max_restarts=MAX_RESTARTS, max_task_retries=0)
    worker_options = replace(options, machine=None)  # each worker probes the machine it runs on
    return [
        _Slot(remote.remote(worker_options, int(ask["num_cpus"])), batchlog.RankStatus(rank=n, kind="worker"))
        for n in range(count)
    ]


def run_ray_batch(items: list[BatchItem], out_dir: Path, options: BatchOptions = BatchOptions(), cluster: Cluster = Cluster()) -> BatchSummary:
    """Generate every pending item on Ray workers; this process writes every file and the log."""
    start = time.time()
    out_dir = Path(out_dir).resolve()
    with _connected(cluster.address):  # an unreachable cluster is refused before the folder is touched
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(out_dir).acquire()
        try:
            open_folder(items, out_dir, options)
            records, _ = batchlog.collect(out_dir)
            work = batchlog.plan_work(items, records, out_dir, options.retry_failed, expect=written_as(options), overwrite=options.overwrite)
            run = f"{int(start * 1000):x}"
            log = batchlog.RankLog(out_dir, 0)
            try:
                log_recovered(log, work, records, out_dir, run)
                if work.todo:
                    _drive(work.todo, out_dir, options, cluster, log, records, run, work.skipped)
            finally:
                log.close()
            latest = batchlog.fold(out_dir, [item.id for item in items])
            batchlog.clear_state(out_dir, remove=True)
            return summarize(items, latest, run, work.skipped, start, out_dir)
        finally:
            lock.release()


def _drive(todo: list[BatchItem], out_dir: Path, options: BatchOptions, cluster: Cluster, log: batchlog.RankLog, records: dict,
           run: str, skipped: int) -> None:
    slots = _start_workers(cluster, options)
    try:
        batchlog.write_run(out_dir, run, len(todo), skipped, len(slots))
        _Driver(out_dir, options, log, records, run, slots).run(todo)
    finally:
        for slot in slots:
            ray.kill(slot.actor, no_restart=True)
