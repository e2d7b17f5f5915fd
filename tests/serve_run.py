"""A real `mgen serve` for the tests: a subprocess on 127.0.0.1 with a tiny model, and ways to
talk to it (the library's own client for events, httpx for everything else)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180  # python, torch and a tiny model on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_models(cache: Path, *keys: str) -> Path:
    """A model cache with the tiny models built, so servers start without building them."""
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.store.models import model_folder

    manifest = load_manifest(cache)
    for key in keys or ("tiny-random",):
        model_folder(manifest, manifest.get(key))
    return cache


class Server:
    """`mgen serve` in a subprocess; `data` is its MGEN_DATA_DIR, so a restart finds its queue."""

    def __init__(self, data: Path, cache: Path, *args: str, port: int | None = None):
        self.data, self.cache, self.args = data, cache, args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = data.parent / f"serve-{self.port}.log"

    @property
    def takes(self) -> Path:
        return self.data / "serve" / "takes"

    def start(self) -> Server:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "MGEN_DATA_DIR": str(self.data),
               "MGEN_CACHE_DIR": str(self.cache), "COLUMNS": "160"}
        env.pop("MGEN_TOKEN", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "musicgen_cli", "serve", "--model-key", "tiny-random", "--host", "127.0.0.1",
                 "--port", str(self.port), "--num-threads", "1", "--offline", *self.args],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.data.parent,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mgen serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code in (200, 401):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"mgen serve did not answer in {START_TIMEOUT_S} s:\n{self.log.read_text()}")

    def signal(self, sig: int, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.signal(signal.SIGTERM, 60)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def wait_for(check, timeout: float = 120, every: float = 0.2):
    """Poll `check()` until it returns something truthy; the value, or AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"still waiting after {timeout} s")


def state(http: httpx.Client, job_id: str) -> str:
    return http.get(f"/v1/generations/{job_id}").json()["state"]


def finished(http: httpx.Client, job_id: str, timeout: float = 180) -> dict:
    """The job once done, failed or cancelled."""
    return wait_for(lambda: (j := http.get(f"/v1/generations/{job_id}").json())["state"] in ("done", "failed", "cancelled") and j,
                    timeout)


def first_progress(url: str, job_id: str) -> list[str]:
    """Follow the job's events until its first progress event; the kinds seen."""
    from musicgen_cli.serve.client import Client

    kinds = []
    with Client(url) as client:
        for kind, _ in client.events(job_id):
            kinds.append(kind)
            if kind in ("progress", "done", "failed", "cancelled"):
                break
    return kinds
