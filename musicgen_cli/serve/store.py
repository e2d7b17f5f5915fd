"""The server's jobs and uploads, kept in SQLite (WAL) in the data folder so a restart loses none.

One row a job: its request as JSON, the seed chosen when it was queued (a re-run after a crash
draws the same one), its state and, once done, the names of the files it wrote. States:
queued -> running -> done | failed | cancelled; a server that dies leaves `running` rows,
which `requeue_interrupted` puts back at the head of the queue on the next start.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicgen_cli.errors import MgenError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    model TEXT NOT NULL,
    seed INTEGER NOT NULL,
    request TEXT NOT NULL,
    inputs TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    files TEXT NOT NULL DEFAULT '[]',
    summary TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    info TEXT NOT NULL
);
"""


class QueueFull(MgenError):
    """The queue holds as many jobs as the server takes."""


@dataclass
class Job:
    seq: int
    id: str
    state: str
    created: float
    model: str
    seed: int
    request: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)  # melody/continuation -> a file the server owns
    attempts: int = 0
    files: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    started: float | None = None
    finished: float | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        for key in ("request", "inputs", "files", "summary"):
            data[key] = json.loads(data[key])
        data["error"] = json.loads(data["error"]) if data["error"] else None
        return cls(**data)


@dataclass(frozen=True)
class Upload:
    id: str
    file: str  # the name under the uploads folder, made by the server
    name: str  # the client's own name, shown, never used as a path
    created: float
    info: dict[str, Any]


class JobStore:
    """Thread-safe: the web handlers and the worker share one connection under a lock."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a queued job is on disk before its 202
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _run(self, sql: str, *args: Any) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # -- jobs ------------------------------------------------------------------------------
    def add(self, request: dict[str, Any], model: str, seed: int, inputs: dict[str, str], max_queued: int) -> Job:
        """Queue a job, or QueueFull when `max_queued` jobs are waiting already."""
        job_id = secrets.token_hex(8)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                waiting = self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (QUEUED,)).fetchone()[0]
                if waiting >= max_queued:
                    raise QueueFull(f"the queue is full ({waiting} jobs waiting)", "wait for some to finish, or cancel one")
                self._db.execute(
                    "INSERT INTO jobs (id, state, created, model, seed, request, inputs) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job_id, QUEUED, time.time(), model, seed, json.dumps(request), json.dumps(inputs)),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        rows = self._all("SELECT * FROM jobs WHERE id = ?", job_id)
        return Job.from_row(rows[0]) if rows else None

    def page(self, limit: int, before: int | None = None) -> list[Job]:
        """Newest first; `before` is the `seq` of the last job of the previous page."""
        if before is None:
            rows = self._all("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", limit)
        else:
            rows = self._all("SELECT * FROM jobs WHERE seq < ? ORDER BY seq DESC LIMIT ?", before, limit)
        return [Job.from_row(r) for r in rows]

    def queued(self) -> list[Job]:
        return [Job.from_row(r) for r in self._all("SELECT * FROM jobs WHERE state = ? ORDER BY seq", QUEUED)]

    def position(self, job: Job) -> int:
        """How many queued jobs run before this one (0: it is next)."""
        return self._all("SELECT COUNT(*) FROM jobs WHERE state = ? AND seq < ?", QUEUED, job.seq)[0][0]

    def depth(self) -> int:
        return self._all("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", QUEUED, RUNNING)[0][0]

    def claim_next(self) -> Job | None:
        """The oldest queued job, now marked running (in one statement: a cancel cannot slip in between)."""
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET state = ?, started = ?, attempts = attempts + 1 WHERE seq = "
                "(SELECT seq FROM jobs WHERE state = ? ORDER BY seq LIMIT 1) RETURNING id",
                (RUNNING, time.time(), QUEUED),
            ).fetchone()
        return None if row is None else self.get(row["id"])

    def finish(self, job_id: str, state: str, *, files: list[str] | None = None, summary: dict | None = None,
               error: dict | None = None) -> None:
        self._run(
            "UPDATE jobs SET state = ?, finished = ?, files = ?, summary = ?, error = ? WHERE id = ?",
            state, time.time(), json.dumps(files or []), json.dumps(summary or {}), json.dumps(error) if error else None, job_id,
        )

    def requeue(self, job_id: str) -> None:
        """Back to the queue at its old place (its seq is kept), to run again from the start."""
        self._run("UPDATE jobs SET state = ?, started = NULL WHERE id = ?", QUEUED, job_id)

    def cancel_queued(self, job_id: str) -> bool:
        return self._run("UPDATE jobs SET state = ?, finished = ? WHERE id = ? AND state = ?",
                         CANCELLED, time.time(), job_id, QUEUED) == 1

    def requeue_interrupted(self) -> list[Job]:
        """Jobs a dead server was running: queued again (each keeps its seq, so runs first)."""
        jobs = [Job.from_row(r) for r in self._all("SELECT * FROM jobs WHERE state = ?", RUNNING)]
        for job in jobs:
            self.requeue(job.id)
        return jobs

    def delete(self, job_id: str) -> None:
        self._run("DELETE FROM jobs WHERE id = ?", job_id)

    # -- uploads ---------------------------------------------------------------------------
    def add_upload(self, upload_id: str, file: str, name: str, info: dict[str, Any]) -> Upload:
        self._run("INSERT INTO uploads (id, file, name, created, info) VALUES (?, ?, ?, ?, ?)",
                  upload_id, file, name, time.time(), json.dumps(info))
        upload = self.upload(upload_id)
        assert upload is not None
        return upload

    def upload(self, upload_id: str) -> Upload | None:
        rows = self._all("SELECT * FROM uploads WHERE id = ?", upload_id)
        if not rows:
            return None
        data = dict(rows[0])
        return Upload(**{**data, "info": json.loads(data["info"])})
