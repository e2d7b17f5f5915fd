"""The client side: send a generation to a running `mgen serve`, follow it, write its files here.

The server's events feed the same Reporter a local run would (the CLI's panel), and each clip
comes back byte for byte, written here as a clip + sidecar pair like a local take (the sidecar
names the local file). Only httpx is needed, which huggingface_hub already brings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Self

import httpx

from musicgen_cli.engine.segments import format_time
from musicgen_cli.errors import Interrupted, MgenError
from musicgen_cli.events import Progress, Reporter
from musicgen_cli.jobs.outputs import sidecar_path
from musicgen_cli.jobs.pairs import write_pair
from musicgen_cli.jobs.request import Request
from musicgen_cli.serve.request import BY_REFERENCE, INPUTS


class ServerError(MgenError):
    """The server refused the job or could not run it; its own words and fix."""


@dataclass(frozen=True)
class Remote:
    """What the server made: the local files written, and the job as the server last described it."""

    files: list[Path]
    job: dict[str, Any]


def request_body(request: Request, model: str | None) -> dict[str, Any]:
    """The API's body for a validated request (its inputs are uploaded separately); `model`
    None leaves the choice to the server (the model it has loaded)."""
    settings, audio = request.settings, request.audio
    body: dict[str, Any] = {"prompt": request.prompts[0], "model": model}
    body.update({f.name: getattr(settings, f.name) for f in fields(settings) if f.name not in BY_REFERENCE})
    body.update({f.name: getattr(audio, f.name) for f in fields(audio)})
    if settings.segments:
        lines = [f"{format_time(start)} {text}" for start, text in settings.segments]
        body["segments"] = [*lines, f"{format_time(settings.duration)} end"]
    return body


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(f"no mgen server answers at {self.url} ({type(exc).__name__})",
                              "start one with `mgen serve`, or check the URL") from None
        if response.status_code >= 400:
            try:
                said = response.json()
                error, fix = said.get("error") or str(said), said.get("fix")
            except ValueError:
                error, fix = f"HTTP {response.status_code}", None
            raise ServerError(f"the server says: {error}", fix)
        return response

    def upload(self, path: Path) -> str:
        with open(path, "rb") as fh:
            return self._call("POST", "/v1/uploads", files={"file": (Path(path).name, fh)}).json()["id"]

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/generations", json=body).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/generations/{job_id}").json()

    def cancel(self, job_id: str) -> None:
        self._call("DELETE", f"/v1/generations/{job_id}")

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(kind, data) for each server-sent event until the stream ends."""
        kind, data = "message", []
        try:
            with self.http.stream("GET", f"/v1/generations/{job_id}/events", timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    self._call("GET", f"/v1/generations/{job_id}")  # raises with the server's words
                for line in response.iter_lines():
                    if not line:
                        if data:
                            yield kind, json.loads("\n".join(data))
                        kind, data = "message", []
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        except httpx.TransportError as exc:
            raise ServerError(f"lost the server at {self.url} ({type(exc).__name__})", "check that it is still running") from None

    def download(self, path: str) -> bytes:
        return self._call("GET", path).content


def follow(client: Client, job_id: str, reporter: Reporter) -> dict[str, Any]:
    """Feed the job's events to `reporter` until it is done; ServerError if it failed or was cancelled."""
    for kind, data in client.events(job_id):
        if kind == "phase":
            reporter.phase(data["name"], data.get("detail", ""))
        elif kind == "progress":
            reporter.progress(Progress(data["task"], data["done"], data["total"], data.get("unit", ""), data.get("readouts") or {}))
        elif kind == "message":
            reporter.message(data["text"], data.get("level", "info"))
        elif kind == "failed":
            raise ServerError(f"the server could not make it: {data.get('error')}", data.get("fix"))
        elif kind == "cancelled":
            raise ServerError("the job was cancelled on the server", "send it again")
        elif kind == "done":
            return client.job(job_id)
    raise ServerError("the server stopped before the job finished", "it stays queued there; run the command again later")


def generate_remote(client: Client, request: Request, model: str | None, reporter: Reporter) -> Remote:
    """Upload the request's inputs, queue it, follow it, and write its clips at `request.paths`."""
    inputs = {name: getattr(request.settings, name) for name in INPUTS}
    body = {**request_body(request, model), **{name: client.upload(path) for name, path in inputs.items() if path}}
    job = client.submit(body)
    try:
        done = follow(client, job["id"], reporter)
    except KeyboardInterrupt:
        client.cancel(job["id"])
        raise Interrupted("stopped; the job was cancelled on the server and nothing was written", "run again") from None
    paths = list(request.paths or ())
    reporter.phase("write", str(paths[0].parent))
    for path, file in zip(paths, done["files"]):
        audio = client.download(file["audio"])
        side = json.loads(client.download(file["sidecar"]))
        side["audio_file"] = path.name
        write_pair(path, sidecar_path(path), lambda tmp, audio=audio: tmp.write_bytes(audio),
                   json.dumps(side, indent=2) + "\n")
    return Remote(paths[: len(done["files"])], done)
