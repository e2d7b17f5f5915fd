"""The server's job store: order, the queue limit, cancel against claim, and what a restart finds."""

from __future__ import annotations

import sqlite3

import pytest

from musicgen_cli.serve.store import JobStore, QueueFull


@pytest.fixture()
def store(tmp_path):
    opened = JobStore(tmp_path / "jobs.sqlite3")
    yield opened
    opened.close()


def test_jobs_run_in_order_and_a_full_queue_is_refused(store):
    first, second = (store.add({"prompt": p}, "tiny-random", seed, {}, max_queued=2) for p, seed in (("a", 1), ("b", 2)))
    with pytest.raises(QueueFull):
        store.add({"prompt": "c"}, "tiny-random", 3, {}, max_queued=2)
    assert (store.position(first), store.position(second)) == (0, 1)
    claimed = store.claim_next()
    assert claimed.id == first.id and claimed.state == "running" and claimed.attempts == 1
    assert store.position(store.get(second.id)) == 0 and store.depth() == 2


def test_a_cancelled_job_is_never_claimed(store):
    job = store.add({"prompt": "a"}, "tiny-random", 1, {}, max_queued=5)
    assert store.cancel_queued(job.id)
    assert store.claim_next() is None and store.get(job.id).state == "cancelled"
    assert not store.cancel_queued(job.id)  # only a queued job is cancelled this way


def test_a_restart_finds_the_interrupted_job_first_with_its_seed(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    before = JobStore(path)
    interrupted = before.add({"prompt": "a"}, "tiny-random", 123, {"melody": "/srv/u1.wav"}, max_queued=5)
    waiting = before.add({"prompt": "b"}, "tiny-random", 456, {}, max_queued=5)
    before.claim_next()
    del before  # no close: as a killed server leaves it
    after = JobStore(path)
    assert [j.id for j in after.requeue_interrupted()] == [interrupted.id]
    assert [j.id for j in after.queued()] == [interrupted.id, waiting.id]
    again = after.claim_next()
    assert (again.id, again.seed, again.attempts, again.inputs) == (interrupted.id, 123, 2, {"melody": "/srv/u1.wav"})
    after.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
