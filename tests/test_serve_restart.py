"""A server killed mid-job loses nothing: SIGKILL, then a restart on the same data folder; SIGTERM."""

from __future__ import annotations

import signal

import pytest

from musicgen_cli.serve.store import JobStore
from tests.serve_run import Server, build_models, finished, first_progress


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("serve-restart-cache"), "tiny-random")


def _post(server: Server, **body) -> dict:
    with server.client() as http:
        response = http.post("/v1/generations", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def test_sigkill_mid_job_then_restart_keeps_the_queue_and_reruns_the_job(tmp_path, cache):
    first = Server(tmp_path / "data", cache).start()
    try:
        interrupted = _post(first, prompt="interrupted", duration=20)  # 1000 frames: seconds of work
        waiting = [_post(first, prompt=f"waiting {i}", duration=0.3, seed=40 + i) for i in range(2)]
        assert first_progress(first.url, interrupted["id"])[-1] == "progress"
        assert first.signal(signal.SIGKILL) == -signal.SIGKILL
    finally:
        first.kill()
    assert not first.takes.exists() or list(first.takes.iterdir()) == []  # nothing, not even a temporary

    store = JobStore(first.data / "serve" / "jobs.sqlite3")
    assert store.get(interrupted["id"]).state == "running"  # as the killed server left it
    store.close()

    second = Server(tmp_path / "data", cache, port=first.port).start()
    try:
        with second.client() as http:
            jobs = {j["id"]: j for j in http.get("/v1/generations").json()["generations"]}
            assert set(jobs) == {interrupted["id"], *(w["id"] for w in waiting)}
            assert all(j["state"] in ("queued", "running", "done") for j in jobs.values())
            rerun = finished(http, interrupted["id"])
            assert rerun["state"] == "done" and rerun["attempts"] == 2
            assert rerun["seed"] == interrupted["seed"] and rerun["sidecars"][0]["seed"] == interrupted["seed"]
            others = [finished(http, w["id"]) for w in waiting]
            assert [o["state"] for o in others] == ["done", "done"]
            assert [o["sidecars"][0]["seed"] for o in others] == [40, 41]
            # the interrupted job, queued first, ran first
            assert rerun["finished"] < min(o["started"] for o in others)
        names = sorted(p.name for p in second.takes.iterdir())
        expected = sorted(f["name"] for j in (rerun, *others) for f in j["files"])
        assert names == sorted(expected + [n.replace(".wav", ".json") for n in expected])  # pairs, and nothing else
    finally:
        second.stop()


def test_sigterm_mid_job_stops_it_cleanly_and_keeps_it_queued(tmp_path, cache):
    server = Server(tmp_path / "data", cache).start()
    try:
        job = _post(server, prompt="long", duration=300)
        later = _post(server, prompt="later", duration=0.3)
        assert first_progress(server.url, job["id"])[-1] == "progress"
        assert server.signal(signal.SIGTERM, timeout=60) == 0
    finally:
        server.kill()
    store = JobStore(server.data / "serve" / "jobs.sqlite3")
    try:
        assert store.get(job["id"]).state == "queued" and store.get(job["id"]).attempts == 1
        assert store.get(later["id"]).state == "queued"
        assert [j.id for j in store.queued()] == [job["id"], later["id"]]
    finally:
        store.close()
    assert not server.takes.exists() or list(server.takes.iterdir()) == []
    assert "Traceback" not in server.log.read_text()
