"""The HTTP API of `mgen serve`, against a live uvicorn on 127.0.0.1 with the tiny model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from musicgen_cli.serve.client import Client
from tests.serve_run import (
    Server,
    build_models,
    finished,
    first_progress,
    state,
    wait_for,
)

RATE = 32000
LONG = {"prompt": "a long drone", "duration": 300}  # minutes of work for the tiny model: cancelled, never awaited


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-api")
    cache = build_models(root / "cache", "tiny-random", "tiny-random-stereo")
    running = Server(root / "data", cache, "--max-queue", "3", "--max-upload", "64KiB", "--max-prompt", "100").start()
    yield running
    running.stop()


@pytest.fixture()
def http(server):
    with server.client() as client:
        yield client
    # no test leaves work behind for the next one
    for job in client_jobs(server):
        if job["state"] in ("queued", "running"):
            with server.client() as c:
                c.delete(f"/v1/generations/{job['id']}")
    with server.client() as c:
        wait_for(lambda: c.get("/v1/health").json()["queue_depth"] == 0, 120)


def client_jobs(server) -> list[dict]:
    with server.client() as c:
        return c.get("/v1/generations", params={"limit": 200}).json()["generations"]


def submit(http, **body) -> dict:
    response = http.post("/v1/generations", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/generations/{response.json()['id']}"
    return response.json()


def events(url: str, job_id: str) -> list[tuple[str, dict]]:
    with Client(url) as client:
        return list(client.events(job_id))


def test_events_come_in_order_and_the_take_is_served_with_ranges(server, http):
    blocker = submit(http, **LONG)
    job = submit(http, prompt="jazz trio", duration=1.5, seed=11)
    assert job["state"] == "queued" and job["position"] == 0 and job["seed"] == 11
    first_progress(server.url, blocker["id"])
    import threading

    seen: list = []
    follower = threading.Thread(target=lambda: seen.extend(events(server.url, job["id"])))
    follower.start()
    wait_for(lambda: http.get("/v1/health").json()["listeners"] >= 1, 30)
    assert http.delete(f"/v1/generations/{blocker['id']}").status_code == 202  # let the job run
    follower.join(180)
    kinds = [k for k, _ in seen]
    assert kinds[0] == "queued" and seen[0][1]["position"] == 0
    assert kinds[-1] == "done"
    assert kinds.index("started") < kinds.index("progress") < kinds.index("done")
    progress = [d for k, d in seen if k == "progress"]
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)
    assert progress[-1]["done"] == progress[-1]["total"] == 75 and progress[-1]["audio_s"] == 1.5
    assert "rss_bytes" in progress[-1]["readouts"]

    done = http.get(f"/v1/generations/{job['id']}").json()
    assert done["state"] == "done" and done["attempts"] == 1
    assert done["sidecars"][0]["seed"] == 11 and done["sidecars"][0]["prompt"] == "jazz trio"
    assert done["plan"]["lm_dtype"] == "float32"
    assert state(http, blocker["id"]) == "cancelled"
    whole = http.get(done["files"][0]["audio"])
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/wav"
    wave, rate = sf.read(io.BytesIO(whole.content))
    assert rate == RATE and len(wave) == int(1.5 * RATE)
    part = http.get(done["files"][0]["audio"], headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == whole.content[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(whole.content)}"
    tail = http.get(done["files"][0]["audio"], headers={"Range": f"bytes={len(whole.content) - 10}-"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    # a finished job's stream is one event
    assert [k for k, _ in events(server.url, job["id"])] == ["done"]


def test_listing_is_newest_first_and_paged(server, http):
    ids = [submit(http, prompt=f"take {i}", duration=0.2, seed=i)["id"] for i in range(3)]
    for job_id in ids:
        assert finished(http, job_id)["state"] == "done"
    page = http.get("/v1/generations", params={"limit": 2}).json()
    assert [j["id"] for j in page["generations"]] == ids[::-1][:2]
    rest = http.get("/v1/generations", params={"limit": 2, "before": page["next"]}).json()
    assert rest["generations"][0]["id"] == ids[0]


@pytest.mark.parametrize("body, status, words", [
    ({"prompt": "x", "duration": -1}, 422, "duration -1 s is out of range"),
    ({"prompt": "x", "top_p": 2}, 422, "top_p 2 must be between 0 and 1"),
    ({"prompt": "x", "temperature": "hot"}, 422, "temperature"),
    ({"prompt": "x", "tempo": 90}, 422, "tempo: Extra inputs are not permitted"),
    ({"prompt": "x", "format": "aiff"}, 422, "unknown audio format 'aiff'"),
    ({"prompt": "x", "normalize": "loud"}, 422, "unknown normalisation 'loud'"),
    ({"prompt": "   "}, 422, "prompt is empty"),
    ({"prompt": "x" * 101}, 422, "prompt has 101 characters"),
    ({"prompt": "x", "duration": 301}, 422, "longer than this server makes"),
    ({"prompt": "x", "model": "tiny-randon"}, 422, "unknown model 'tiny-randon'"),
    ({"prompt": "x", "model": "/etc"}, 422, "unknown model '/etc'"),
    ({"prompt": "x", "melody": "nope"}, 422, "melody: there is no upload or finished take 'nope'"),
    ({"segments": ["0:00 intro", "0:00 drums"]}, 422, "segments line 2"),
])
def test_bad_requests_are_refused_in_one_line_before_queueing(http, body, status, words):
    before = len(http.get("/v1/generations", params={"limit": 200}).json()["generations"])
    response = http.post("/v1/generations", json=body)
    assert response.status_code == status
    said = response.json()
    assert set(said) == {"error", "fix"} and words in said["error"] and said["fix"]
    assert len(http.get("/v1/generations", params={"limit": 200}).json()["generations"]) == before


def test_a_full_queue_answers_429(server, http):
    running = submit(http, **LONG)
    first_progress(server.url, running["id"])
    waiting = [submit(http, **LONG) for _ in range(3)]
    refused = http.post("/v1/generations", json=LONG)
    assert refused.status_code == 429 and "queue is full" in refused.json()["error"]
    assert refused.headers["retry-after"]
    # cancelling a queued job frees its place
    cancelled = http.delete(f"/v1/generations/{waiting[0]['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert http.post("/v1/generations", json={"prompt": "one more", "duration": 0.2}).status_code == 202


def test_cancel_while_running_leaves_no_files(server, http):
    before = set(server.takes.iterdir())
    job = submit(http, **LONG)
    assert first_progress(server.url, job["id"])[-1] == "progress"
    assert state(http, job["id"]) == "running"
    response = http.delete(f"/v1/generations/{job['id']}")
    assert response.status_code == 202 and response.json()["state"] == "cancelling"
    assert finished(http, job["id"])["state"] == "cancelled"
    assert set(server.takes.iterdir()) == before
    assert http.get(f"/v1/generations/{job['id']}/audio").status_code == 409


def test_deleting_a_take_removes_its_files(server, http):
    job = submit(http, prompt="short", duration=0.2)
    done = finished(http, job["id"])
    clip = server.takes / done["files"][0]["name"]
    assert clip.is_file() and clip.with_suffix(".json").is_file()
    assert http.delete(f"/v1/generations/{job['id']}").status_code == 204
    assert not clip.exists() and not clip.with_suffix(".json").exists()
    assert http.get(f"/v1/generations/{job['id']}").status_code == 404
    assert http.delete(f"/v1/generations/{job['id']}").status_code == 404


def _wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 220 * t), RATE, format="WAV")
    return buffer.getvalue()


def test_uploads_are_checked_before_they_are_accepted(server, http):
    def post(name: str, data: bytes):
        return http.post("/v1/uploads", files={"file": (name, data)})

    not_audio = post("tune.wav", b"this is not audio at all " * 20)
    assert not_audio.status_code == 415 and "not audio" in not_audio.json()["error"]
    empty = post("tune.wav", b"")
    assert empty.status_code == 422 and "empty" in empty.json()["error"]
    huge = post("tune.wav", _wav(3.0))  # ~190 kB > the server's 64 KiB
    assert huge.status_code == 413 and huge.json()["fix"]
    assert list((server.data / "serve" / "uploads").glob("*")) == []
    ok = post("../../evil name.wav", _wav(0.5))
    assert ok.status_code == 201, ok.text
    upload = ok.json()
    assert upload["duration_s"] == 0.5 and upload["sample_rate"] == RATE
    stored = list((server.data / "serve" / "uploads").iterdir())
    assert [p.name for p in stored] == [f"{upload['id']}.wav"]  # the server's name, not the client's

    # continue the upload, then extend that take by its id ("extend this take")
    first = finished(http, submit(http, prompt="go on", duration=0.3, continuation=upload["id"], seed=1)["id"])
    assert first["state"] == "done", first
    assert first["sidecars"][0]["duration_s"] == pytest.approx(0.8, abs=0.02)
    second = finished(http, submit(http, prompt="and on", duration=0.3, continuation=first["id"], seed=2)["id"])
    assert second["state"] == "done", second
    assert second["sidecars"][0]["duration_s"] == pytest.approx(1.1, abs=0.03)


def test_a_job_for_another_model_swaps_it_in(http):
    stereo = finished(http, submit(http, prompt="wide", duration=0.3, model="tiny-random-stereo")["id"])
    assert stereo["state"] == "done", stereo
    assert stereo["sidecars"][0]["channels"] == 2 and stereo["sidecars"][0]["model"]["key"] == "tiny-random-stereo"
    assert http.get("/v1/health").json()["model"] == "tiny-random-stereo"
    mono = finished(http, submit(http, prompt="narrow", duration=0.3, model="tiny-random")["id"])
    assert mono["sidecars"][0]["channels"] == 1 and http.get("/v1/health").json()["model"] == "tiny-random"


def test_models_health_and_unknown_ids(http):
    models = http.get("/v1/models").json()
    assert models["loaded"] == "tiny-random"
    assert any(m["key"] == "tiny-random" and m["cached"] for m in models["models"])
    health = http.get("/v1/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny-random" and health["loaded"]
    assert health["queue_depth"] == 0 and health["memory"]["rss_bytes"] > 0
    assert health["plan"]["lm_dtype"] == "float32"
    missing = http.get("/v1/generations/doesnotexist")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "fix"}
    assert http.get("/v1/generations/doesnotexist/events").status_code == 404
    assert http.get("/docs").status_code == 200 and "/v1/generations" in http.get("/openapi.json").json()["paths"]
