"""`mgen serve` under load: a job's decode speed with 20 clients polling and 5 following its
events, against the same job with no clients; the first progress event's delay; the server's
memory beyond the model.

    PYTHONPATH=. python benchmarks/bench_serve.py                          # tiny-random, 20 s jobs
    PYTHONPATH=. python benchmarks/bench_serve.py --model-key small --seconds 10 --rounds 2

Everything runs on 127.0.0.1 and stops by itself. One server process (started as a user starts
it) runs every job; quiet and loaded jobs alternate, with the same prompt, seed and duration, so
the ratio comes from one run on one warm model. Speeds are the server's own figures (decode
steps over generate seconds, from each take's sidecar). Pollers ask GET /v1/generations/{id}
every --poll-every seconds; followers read GET /v1/generations/{id}/events to the end. The first
progress delay is measured by a follower, listening since the job was queued, from the `started`
event to the first `progress` one.
Memory: the server's RSS after loading, minus the RSS of a bare process that loads the same
model (`load_model`) and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from musicgen_cli.serve.client import Client  # noqa: E402  (after the checkout joins sys.path)

BARE = """
import sys, psutil
from musicgen_cli.engine.musicgen import load_model
from musicgen_cli.planning.hardware import configure_threads
configure_threads(int(sys.argv[2]), None)
mg = load_model(sys.argv[1], download=False)
print(psutil.Process().memory_info().rss)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mgen serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("mgen serve did not start")


def follow(url: str, job_id: str, out: dict) -> None:
    with Client(url) as client:
        for kind, _ in client.events(job_id):
            now = time.perf_counter()
            if kind == "started":
                out["started"] = now
            elif kind == "progress" and "first_progress" not in out:
                out["first_progress"] = now
            if kind in ("done", "failed", "cancelled"):
                return


def poll(url: str, job_id: str, every: float, stop: threading.Event, count: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            http.get(f"/v1/generations/{job_id}").raise_for_status()
            count[0] += 1
            stop.wait(every)


def run_job(url: str, body: dict, pollers: int, followers: int, every: float) -> dict:
    with httpx.Client(base_url=url, timeout=30) as http:
        # a short job ahead keeps this one queued until its followers listen, so they see it start
        blocker = http.post("/v1/generations", json={**body, "duration": 1.0}).json()
        job = http.post("/v1/generations", json=body).json()
        stop, count = threading.Event(), [0]
        timing: dict = {}
        threads = [threading.Thread(target=follow, args=(url, job["id"], timing))]
        threads += [threading.Thread(target=follow, args=(url, job["id"], {})) for _ in range(followers - 1)]
        pollers_ = [threading.Thread(target=poll, args=(url, job["id"], every, stop, count)) for _ in range(pollers)]
        for t in threads + pollers_:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        for t in pollers_:
            t.join()
        done = http.get(f"/v1/generations/{job['id']}").json()
        for finished in (blocker, job):  # the takes' files go; the next job is the same
            http.delete(f"/v1/generations/{finished['id']}")
    assert done["state"] == "done", done
    return {"steps_per_s": done["summary"]["steps_per_s"], "polls": count[0],
            "first_progress_s": timing["first_progress"] - timing["started"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-key", default="tiny-random")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per job")
    parser.add_argument("--rounds", type=int, default=3, help="quiet/loaded pairs")
    parser.add_argument("--pollers", type=int, default=20)
    parser.add_argument("--followers", type=int, default=5)
    parser.add_argument("--poll-every", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server (the rest of the CPU serves the clients)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MGEN_DATA_DIR": str(work / "data"), "HF_HUB_OFFLINE": "1",
           "MGEN_CACHE_DIR": os.environ.get("MGEN_CACHE_DIR") or str(work / "cache")}
    bare = int(subprocess.run([sys.executable, "-c", BARE, args.model_key, str(args.threads)], env=env, check=True,
                              capture_output=True, text=True).stdout.split()[-1])
    proc = subprocess.Popen([sys.executable, "-m", "musicgen_cli", "serve", "--model-key", args.model_key, "--port", str(port),
                             "--num-threads", str(args.threads), "--offline"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url, proc)
        server_rss = httpx.get(f"{url}/v1/health").json()["memory"]["rss_bytes"]
        body = {"prompt": "a steady groove", "duration": args.seconds, "seed": 1}
        run_job(url, {**body, "duration": min(2.0, args.seconds)}, 0, 1, args.poll_every)  # warm-up
        quiet, loaded = [], []
        for round_ in range(args.rounds):
            order = [(quiet, 0, 1), (loaded, args.pollers, args.followers)]
            for runs, pollers, followers in order if round_ % 2 == 0 else order[::-1]:
                runs.append(run_job(url, body, pollers, followers, args.poll_every))
        after_rss = httpx.get(f"{url}/v1/health").json()["memory"]["rss_bytes"]
    finally:
        proc.terminate()
        proc.wait(60)
    q = statistics.median(r["steps_per_s"] for r in quiet)
    ld = statistics.median(r["steps_per_s"] for r in loaded)
    result = {
        "model": args.model_key, "seconds": args.seconds, "rounds": args.rounds, "threads": args.threads,
        "pollers": args.pollers, "followers": args.followers, "poll_every_s": args.poll_every,
        "quiet_steps_per_s": [round(r["steps_per_s"], 1) for r in quiet],
        "loaded_steps_per_s": [round(r["steps_per_s"], 1) for r in loaded],
        "loaded_over_quiet": round(ld / q, 3),
        "polls_per_loaded_job": [r["polls"] for r in loaded],
        "first_progress_s": {"quiet": [round(r["first_progress_s"], 3) for r in quiet],
                             "loaded": [round(r["first_progress_s"], 3) for r in loaded]},
        "server_rss_mib": round(server_rss / 2**20, 1), "bare_model_rss_mib": round(bare / 2**20, 1),
        "server_beyond_model_mib": round((server_rss - bare) / 2**20, 1),
        "server_rss_after_mib": round(after_rss / 2**20, 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
