"""The one worker: it holds the loaded model and runs the queued jobs in order on it.

It runs on a thread of its own, so the web side keeps answering while a job generates. The
engine's progress reaches it through a Reporter (`JobReporter`), which publishes each update
on the bus and is also where a cancel or a shutdown stops the job: the next update raises
`Stopped`, the generation unwinds, and nothing is written.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from musicgen_cli.errors import MgenError
from musicgen_cli.events import NullReporter, Progress, Reporter
from musicgen_cli.serve import store as states
from musicgen_cli.serve.bus import Bus
from musicgen_cli.serve.request import Limits, checked
from musicgen_cli.serve.store import Job, JobStore

PROGRESS_EVERY_S = 0.1  # at most ten progress events a second per job; the first and last always
READOUTS = ("rss_bytes", "peak_rss_bytes", "ram_used_bytes", "ram_total_bytes", "cpu_percent", "per_core_percent",
            "torch_threads", "torch_interop_threads", "steps", "frame_rate")


@dataclass(frozen=True)
class ServeOptions:
    """What the server is started with: its model, its folders, how models load, its limits."""

    model: str
    data_dir: Path  # jobs.sqlite3 and uploads/
    out_dir: Path  # the takes, clip + sidecar pairs
    # engine.musicgen.load_model's keywords: cache_dir, machine, dtype, quantize, reserve_bytes, max_vram_bytes, download
    load: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    extra: dict = field(default_factory=dict)  # more sidecar fields (torch threads)

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def cache_dir(self) -> Path | None:
        return self.load.get("cache_dir")


class Stopped(Exception):
    """Raised inside the generation by the reporter: the job was cancelled or the server is stopping."""


class JobReporter:
    """A Reporter that turns the engine's phases and progress into the job's events."""

    def __init__(self, bus: Bus, job_id: str, stop: threading.Event):
        self.bus, self.job_id, self.stop = bus, job_id, stop
        self.section: str | None = None
        self._last = 0.0
        self._started = time.perf_counter()

    def _check(self) -> None:
        if self.stop.is_set():
            raise Stopped()

    def phase(self, name: str, detail: str = "") -> None:
        self._check()
        if name.startswith("section "):
            self.section = f"{name}: {detail}"
        self.bus.publish(self.job_id, "phase", {"name": name, "detail": detail})

    def progress(self, update: Progress) -> None:
        self._check()
        now = time.perf_counter()
        last = update.total is not None and update.done >= update.total
        if self._last and now - self._last < PROGRESS_EVERY_S and not last:
            return
        if not self._last:
            self._started = now
        self._last = now
        readouts = {k: v for k, v in update.readouts.items() if k in READOUTS}
        readouts["gpus"] = [g._asdict() if hasattr(g, "_asdict") else g for g in update.readouts.get("gpus") or []]
        data: dict[str, Any] = {"task": update.task, "done": update.done, "total": update.total, "unit": update.unit,
                                "readouts": readouts, "section": self.section}
        rate = update.readouts.get("frame_rate")
        if update.unit == "frames" and rate:
            data.update(audio_s=update.done / rate, total_s=(update.total or 0) / rate)
        elapsed = now - self._started
        if update.done and update.total and elapsed > 0:
            data["eta_s"] = (update.total - update.done) * elapsed / update.done
            data["steps_per_s"] = readouts.get("steps", 0) / elapsed
        self.bus.publish(self.job_id, "progress", data)

    def message(self, text: str, level: str = "info") -> None:
        self.bus.publish(self.job_id, "message", {"text": text, "level": level})


def _release_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Worker:
    def __init__(self, options: ServeOptions, store: JobStore, bus: Bus):
        self.options, self.store, self.bus = options, store, bus
        self.mg = None  # engine.musicgen.MusicGen once loaded
        self.plan: dict | None = None  # its memory plan, as JSON
        self.model_key = options.model
        self.running: Job | None = None
        self._stop = threading.Event()  # the server is stopping
        self._cancel = threading.Event()  # the running job is to stop
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- the model ---------------------------------------------------------------------------
    def load(self, key: str, reporter: Reporter | None = None) -> None:
        """Plan and load `key` (freeing the model loaded before; it comes back if `key` fails)."""
        from musicgen_cli.engine.musicgen import load_model

        old, self.mg, self.plan = self.model_key if self.mg is not None else None, None, None
        _release_memory()
        try:
            mg = load_model(key, **self.options.load, reporter=reporter)
        except BaseException:
            if old is not None:
                self.load(old)
            raise
        mg.reporter = NullReporter()
        self.mg, self.model_key, self.plan = mg, key, mg.plan.to_json()

    # -- the thread --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mgen-serve-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify()

    def request_stop(self) -> None:
        """Stop the running job cleanly at its next step (it stays queued, to run first next time)."""
        self._stop.set()
        self._cancel.set()
        self.wake()

    def stop(self, timeout: float | None = None) -> None:
        """`request_stop`, then wait for the thread to end."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def cancel(self, job_id: str) -> bool:
        """Stop the running job if it is `job_id`; the worker marks it cancelled."""
        running = self.running
        if running is None or running.id != job_id:
            return False
        self._cancel.set()
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self.store.claim_next()
            if job is None:
                with self._wake:
                    self._wake.wait(1.0)
                continue
            self._cancel.clear()
            self.running = job
            try:
                self._run(job)
            finally:
                self.running = None

    def _announce_queue(self) -> None:
        for position, job in enumerate(self.store.queued()):
            self.bus.publish(job.id, "queued", {"position": position})

    def _run(self, job: Job) -> None:
        reporter = JobReporter(self.bus, job.id, self._cancel)
        self.bus.publish(job.id, "started", {"attempt": job.attempts, "model": job.model, "seed": job.seed})
        self._announce_queue()
        paths: list[Path] = []
        try:
            if job.model != self.model_key or self.mg is None:
                self.load(job.model, reporter)
            paths = self._generate(job, reporter)
            if self._cancel.is_set():  # cancelled while the files were written: they go too
                raise Stopped()
        except Stopped:
            _remove(paths)
            if self._stop.is_set():
                self.store.requeue(job.id)
                self.bus.publish(job.id, "requeued", {"reason": "the server is stopping; the job runs again from the start"})
            else:
                self.store.finish(job.id, states.CANCELLED)
                self.bus.publish(job.id, "cancelled", {})
            return
        except MgenError as exc:
            _remove(paths)
            self._fail(job, exc.message, exc.fix)
            return
        except Exception as exc:  # noqa: BLE001 - out of memory, a model error: this job fails, the server goes on
            _remove(paths)
            _release_memory()
            text = (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0]
            self._fail(job, f"the job failed ({text})", "try a shorter duration or fewer samples" if "memory" in text.lower() else None)
            return
        self.store.finish(job.id, states.DONE, files=[p.name for p in paths], summary=cost(paths))
        self.bus.publish(job.id, "done", {"files": [p.name for p in paths]})

    def _fail(self, job: Job, message: str, fix: str | None) -> None:
        error = {"error": message, "fix": fix}
        self.store.finish(job.id, states.FAILED, error=error)
        self.bus.publish(job.id, "failed", error)

    def _generate(self, job: Job, reporter: JobReporter) -> list[Path]:
        from musicgen_cli.jobs.run import run

        o = self.options
        request = checked(job.request, {k: Path(v) for k, v in job.inputs.items()}, o.limits, model=job.model,
                          out_dir=o.out_dir, seed=job.seed, number=job.seq)
        request = replace(request, extra={**o.extra, "server_job": job.id})
        try:
            return [w.path for w in run(request, self.mg, reporter)]
        except BaseException:
            _remove(list(request.paths or ()))
            raise


def cost(paths: list[Path]) -> dict[str, Any]:
    """What the finished job's first sidecar says it cost."""
    import json

    from musicgen_cli.jobs.outputs import sidecar_path

    side = json.loads(sidecar_path(paths[0]).read_text(encoding="utf-8"))
    keys = ("duration_s", "sample_rate", "channels", "steps", "steps_per_s", "realtime_factor", "timings_s", "peak_ram_bytes")
    return {k: side.get(k) for k in keys}


def _remove(paths: list[Path]) -> None:
    from musicgen_cli.jobs.outputs import sidecar_path

    for path in paths:
        path.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)
