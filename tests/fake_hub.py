"""A Hugging Face hub on 127.0.0.1 that answers the requests huggingface_hub 2.4 makes for downloads.

It serves `GET /api/models/{repo}[/revision/{rev}]` (siblings, with sizes, blob ids and LFS
sha256 when `blobs=True`) and `HEAD`/`GET /{repo}/resolve/{rev}/{file}` with the hub's headers
(ETag, X-Repo-Commit, X-Linked-Etag/X-Linked-Size for LFS files, Content-Length, Range).
Faults a test can arm: cut a file mid-transfer (then answer 503 until told to recover), serve wrong bytes once, gate a repo.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cli_run import run_subprocess

LFS_SUFFIXES = (".safetensors", ".bin", ".model")
GOOD_TOKEN = "hf_fake_good_token_123"


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    commit: str
    gated: bool = False

    @classmethod
    def from_folder(cls, repo_id: str, folder: Path, gated: bool = False) -> FakeRepo:
        files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file() and not p.name.startswith(".")}
        commit = hashlib.sha1(repo_id.encode() + b"".join(files.values())).hexdigest()
        return cls(repo_id, files, commit, gated)


def _is_lfs(name: str) -> bool:
    return name.endswith(LFS_SUFFIXES)


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def _sibling(name: str, data: bytes, blobs: bool) -> dict:
    if not blobs:
        return {"rfilename": name}
    sib = {"rfilename": name, "size": len(data), "blobId": _git_blob_id(data)}
    if _is_lfs(name):
        sib["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
    return sib


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range header)
    cut: set[tuple[str, str]] = field(default_factory=set)  # next GET sends 90% of the file, then hangs up
    corrupt: dict[tuple[str, str], int] = field(default_factory=dict)  # that many GETs send right-sized wrong bytes
    outage: bool = False  # after a cut: every request gets 503 until a test clears it
    url: str = ""

    def add(self, repo: FakeRepo) -> FakeRepo:
        self.repos[repo.repo_id] = repo
        return repo

    def requests(self, method: str | None = None, path_part: str = "") -> list[tuple[str, str, str | None]]:
        return [r for r in self.log if (method is None or r[0] == method) and path_part in r[1]]


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self._route(body=False)

        def do_GET(self) -> None:
            self._route(body=True)

        def _send(self, status: int, headers: dict[str, str], payload: bytes = b"", body: bool = True) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def _error(self, status: int, code: str, message: str = "", body: bool = True) -> None:
            headers = {"X-Error-Code": code, "Content-Type": "application/json"}
            if message:
                headers["X-Error-Message"] = message
            self._send(status, headers, json.dumps({"error": message or code}).encode(), body)

        def _route(self, body: bool) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            hub.log.append((self.command, path, self.headers.get("Range")))
            if hub.outage:
                return self._send(503, {}, b"down for maintenance", body)
            if path.startswith("/captive-portal/"):  # what a hotel wifi or a wrong HF_ENDPOINT answers
                return self._send(200, {"Content-Type": "text/html"}, b"<html>please log in</html>", body)
            segs = path.strip("/").split("/")
            if segs[:2] == ["api", "models"] and len(segs) >= 4:
                rev = segs[5] if len(segs) >= 6 and segs[4] == "revision" else "main"
                return self._model_info("/".join(segs[2:4]), rev, "blobs" in parse_qs(parts.query), body)
            if len(segs) >= 5 and segs[2] == "resolve":
                return self._resolve("/".join(segs[:2]), segs[3], "/".join(segs[4:]), body)
            self._error(404, "EntryNotFound", body=body)

        def _repo(self, repo_id: str, rev: str, body: bool) -> FakeRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found", body)
            elif rev not in ("main", repo.commit):
                self._error(404, "RevisionNotFound", "Invalid rev id", body)
                return None
            return repo

        def _model_info(self, repo_id: str, rev: str, blobs: bool, body: bool) -> None:
            repo = self._repo(repo_id, rev, body)
            if repo is None:
                return
            info = {
                "id": repo.repo_id,
                "sha": repo.commit,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "siblings": [_sibling(name, data, blobs) for name, data in repo.files.items()],
            }
            self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode(), body)

        def _resolve(self, repo_id: str, rev: str, name: str, body: bool) -> None:
            repo = self._repo(repo_id, rev, body)
            if repo is None:
                return
            if repo.gated:
                auth = self.headers.get("Authorization")
                if auth != f"Bearer {GOOD_TOKEN}":
                    msg = "Access to model is restricted. You must have access to it and be authenticated."
                    return self._error(401 if auth is None else 403, "GatedRepo", msg, body)
            data = repo.files.get(name)
            if data is None:
                return self._error(404, "EntryNotFound", body=body)
            headers = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            if _is_lfs(name):
                sha = hashlib.sha256(data).hexdigest()
                headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))})
            else:
                headers["ETag"] = f'"{_git_blob_id(data)}"'
            key = (repo_id, name)
            if body and hub.corrupt.get(key):
                hub.corrupt[key] -= 1
                data = bytes(b ^ 0xFF for b in data)
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            payload = data[start:]
            if body and key in hub.cut:
                hub.cut.discard(key)
                hub.outage = True
                self.send_response(206 if start else 200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) * 9 // 10])
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(206 if start else 200, headers, payload, body)

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-request (the interrupted-download tests do) is what they
        # test, not a server error: no traceback in the test log.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeHubServer:
    """Runs a FakeHub on a random local port in a background thread."""

    def __init__(self, hub: FakeHub):
        self.hub = hub
        self.server = _Server(("127.0.0.1", 0), _handler(hub))
        self.server.daemon_threads = True
        hub.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self.hub

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the repos and helpers the hub tests share (fixtures: conftest.py) ---------------------------

SMALL = "facebook/musicgen-small"
BIG = "acme/musicgen-big"
TRANSFORMERS_FILES = {
    "README.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}
AUDIOCRAFT = {"state_dict.bin": b"\x80audiocraft-lm" * 300, "compression_state_dict.bin": b"\x80encodec" * 200}


def mgen(cache_dir: Path, endpoint: str, *args: str, **env: str):
    """A real `mgen` process: proves HF_ENDPOINT and friends reach the hub client from the environment."""
    return run_subprocess(
        *args, HF_ENDPOINT=endpoint, HF_HOME=str(cache_dir.parent / "hf-home"), MGEN_CACHE_DIR=str(cache_dir), **env
    )


def file_gets(hub: FakeHub, name: str) -> list:
    return [r for r in hub.requests("GET", "/resolve/") if r[1].endswith("/" + name)]
