"""The HTTP side of `mgen serve`: the versioned API under /v1, the event streams and the page.

Handlers only read and write the job store and talk to the worker; nothing here generates.
Every error a client can cause is a JSON body `{"error": ..., "fix": ...}` with a 4xx status.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, create_model

from musicgen_cli import __version__
from musicgen_cli.engine.audio import FORMATS, AudioOptions, read_audio
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.errors import AudioError, MgenError
from musicgen_cli.serve import store as states
from musicgen_cli.serve.bus import TERMINAL, Bus, Event
from musicgen_cli.serve.request import (
    AUDIO_DEFAULTS,
    AUDIO_FIELDS,
    INPUTS,
    SETTING_FIELDS,
    checked,
)
from musicgen_cli.serve.store import Job, JobStore, QueueFull
from musicgen_cli.serve.worker import ServeOptions, Worker

STATIC = resources.files("musicgen_cli.serve") / "static"
COOKIE = "mgen_session"
KEEPALIVE_S = 15.0
PAGE_SIZE = 20
_MEDIA = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}


class ApiError(Exception):
    def __init__(self, status: int, error: str, fix: str | None = None, headers: dict[str, str] | None = None):
        self.status, self.error, self.fix, self.headers = status, error, fix, headers


def _body_model() -> type[BaseModel]:
    """The request body: GenerateSettings' and AudioOptions' fields under their own names and
    defaults, the prompt, the model, and the inputs sent by id (see serve.request)."""
    own: dict[str, Any] = {
        "prompt": (str, ""),
        "model": (str | None, None),
        "segments": (str | list[str] | None, None),
        **{name: (str | None, None) for name in INPUTS},
    }
    for kind, names in ((GenerateSettings, SETTING_FIELDS), (AudioOptions, AUDIO_FIELDS)):
        hints = typing.get_type_hints(kind)
        own.update({f.name: (hints[f.name], getattr(AUDIO_DEFAULTS, f.name, f.default)) for f in names})
    return create_model("GenerationRequest", __config__=ConfigDict(extra="forbid"), **own)


GenerationRequest = _body_model()


class Login(BaseModel):
    token: str


@dataclass
class Service:
    """Everything the handlers share."""

    options: ServeOptions
    store: JobStore
    bus: Bus
    worker: Worker
    token: str | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def session(self) -> str:
        """The page's cookie: derived from the token, so it outlives a restart and reveals nothing."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"mgen-serve-session", hashlib.sha256).hexdigest()


def create_app(service: Service) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.worker.start()
        yield
        service.stopping.set()
        await asyncio.to_thread(service.worker.stop, 60.0)
        service.store.close()

    app = FastAPI(title="mgen serve", version=__version__, lifespan=lifespan,
                  description="MusicGen on one warm model: queue generations, follow them, fetch the audio.")
    app.state.service = service

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "fix": exc.fix}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        fix = "drop it (GET /docs lists the fields)" if first.get("type") == "extra_forbidden" else "see GET /docs for the field's type"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'is not valid')}", "fix": fix}, status_code=422)

    def authorize(request: Request) -> None:
        if service.token is None:
            return
        given = request.headers.get("authorization", "")
        if given.lower().startswith("bearer ") and secrets.compare_digest(given[7:].strip(), service.token):
            return
        if secrets.compare_digest(request.cookies.get(COOKIE, ""), service.session()):
            return
        raise ApiError(401, "this server needs a token", "send `Authorization: Bearer <token>`, or log in on the page",
                       headers={"WWW-Authenticate": "Bearer"})

    api = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])
    public = APIRouter(prefix="/v1")

    @public.post("/login")
    def login(body: Login) -> Response:
        if service.token is None:
            return Response(status_code=204)
        if not secrets.compare_digest(body.token, service.token):
            raise ApiError(401, "wrong token", "use the token the server was started with (--token or MGEN_TOKEN)")
        response = Response(status_code=204)
        response.set_cookie(COOKIE, service.session(), httponly=True, samesite="strict")
        return response

    @api.post("/generations", status_code=202)
    def submit(body: GenerationRequest, response: Response) -> dict[str, Any]:  # type: ignore[valid-type]
        request = body.model_dump(exclude_unset=True)
        model = request.pop("model", None) or service.worker.model_key
        _check_model(service, model)
        inputs = {name: _input_file(service, request[name], name) for name in INPUTS if request.get(name)}
        try:
            job = checked(request, {k: Path(v) for k, v in inputs.items()}, service.options.limits, model=model,
                          out_dir=service.options.out_dir)
            added = service.store.add(request, model, job.settings.seed, inputs, service.options.limits.max_queue)
        except QueueFull as exc:
            raise ApiError(429, exc.message, exc.fix, headers={"Retry-After": "30"}) from None
        except MgenError as exc:
            raise ApiError(422, exc.message, exc.fix) from None
        service.worker.wake()
        response.headers["Location"] = f"/v1/generations/{added.id}"
        return _job_json(service, added)

    @api.get("/generations")
    async def listing(limit: int = Query(PAGE_SIZE, ge=1, le=200), before: int | None = Query(None)) -> dict[str, Any]:
        jobs = service.store.page(limit, before)
        more = len(jobs) == limit and bool(service.store.page(1, jobs[-1].seq))
        return {"generations": [_job_json(service, j) for j in jobs], "next": jobs[-1].seq if more else None}

    @api.get("/generations/{job_id}")
    async def one(job_id: str) -> dict[str, Any]:
        return _job_json(service, _job(service, job_id), full=True)

    @api.get("/generations/{job_id}/audio")
    def audio(job_id: str, sample: int = Query(0, ge=0)) -> FileResponse:
        path = _take_file(service, _job(service, job_id), sample)
        return FileResponse(path, media_type=_MEDIA.get(path.suffix.lstrip("."), "application/octet-stream"), filename=path.name)

    @api.get("/generations/{job_id}/sidecar")
    def sidecar(job_id: str, sample: int = Query(0, ge=0)) -> FileResponse:
        path = _take_file(service, _job(service, job_id), sample).with_suffix(".json")
        return FileResponse(path, media_type="application/json", filename=path.name)

    @api.get("/generations/{job_id}/events")
    async def events(job_id: str) -> StreamingResponse:
        _job(service, job_id)
        return StreamingResponse(_stream(service, job_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.delete("/generations/{job_id}")
    def delete(job_id: str) -> Response:
        job = _job(service, job_id)
        if job.state == states.QUEUED and service.store.cancel_queued(job.id):
            service.bus.publish(job.id, "cancelled", {})
            return JSONResponse({"id": job.id, "state": states.CANCELLED})
        if job.state == states.RUNNING and service.worker.cancel(job.id):
            return JSONResponse({"id": job.id, "state": "cancelling"}, status_code=202)
        job = _job(service, job_id)
        if job.state not in states.FINISHED:
            raise ApiError(409, f"job {job.id} is {job.state}", "try again in a moment")
        for name in job.files:
            path = service.options.out_dir / name
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
        service.store.delete(job.id)
        return Response(status_code=204)

    @api.post("/uploads", status_code=201)
    async def upload(request: Request) -> dict[str, Any]:
        return await _upload(service, request)

    @api.get("/models")
    def models() -> dict[str, Any]:
        from musicgen_cli.store.manifest import load_manifest

        manifest = load_manifest(service.options.cache_dir)
        return {"loaded": service.worker.model_key, "models": [
            {"key": e.key, "description": e.description, "repo_id": e.repo_id, "cached": manifest.is_cached(e) or e.random_weights,
             "melody": e.capabilities.melody, "channels": e.capabilities.channels}
            for e in manifest.entries.values()
        ]}

    @api.get("/health")
    async def health() -> dict[str, Any]:
        from musicgen_cli.planning.monitor import snapshot

        mg = service.worker.mg
        snap = snapshot()
        running = service.worker.running
        return {
            "status": "stopping" if service.stopping.is_set() else "ok",
            "version": __version__,
            "model": service.worker.model_key,
            "loaded": mg is not None,
            "plan": service.worker.plan,
            "queue_depth": service.store.depth(),
            "running": running.id if running else None,
            "listeners": service.bus.listeners(),
            "memory": {"rss_bytes": snap.rss_bytes, "peak_rss_bytes": snap.peak_rss_bytes, "ram_used_bytes": snap.ram_used_bytes,
                       "ram_total_bytes": snap.ram_total_bytes, "gpus": [g._asdict() for g in snap.gpus]},
            "limits": service.options.limits.__dict__,
        }

    app.include_router(public)
    app.include_router(api)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        with resources.as_file(STATIC / "index.html") as path:
            return FileResponse(path, media_type="text/html")

    with resources.as_file(STATIC) as folder:
        app.mount("/static", StaticFiles(directory=folder), name="static")
    return app


# -- helpers -----------------------------------------------------------------------------------
def _job(service: Service, job_id: str) -> Job:
    job = service.store.get(job_id)
    if job is None:
        raise ApiError(404, f"there is no generation {job_id!r}", "GET /v1/generations lists them")
    return job


def _take_file(service: Service, job: Job, sample: int) -> Path:
    if job.state != states.DONE:
        raise ApiError(409, f"generation {job.id} is {job.state}, it has no audio yet", "wait for its `done` event")
    if sample >= len(job.files):
        raise ApiError(404, f"generation {job.id} has {len(job.files)} sample(s)", f"ask for sample 0 to {len(job.files) - 1}")
    path = service.options.out_dir / job.files[sample]
    if not path.is_file():
        raise ApiError(410, f"the file of generation {job.id} is gone from the server", "generate it again")
    return path


def _check_model(service: Service, model: str) -> None:
    """A manifest key whose files are here (or are built here): a request never names a path."""
    if model == service.worker.model_key:
        return
    from musicgen_cli.store.manifest import load_manifest

    manifest = load_manifest(service.options.cache_dir)
    entry = manifest.entries.get(model)
    if entry is None:
        raise ApiError(422, f"unknown model {model!r}", "GET /v1/models lists the models this server has")
    if not (manifest.is_cached(entry) or entry.random_weights or service.options.load.get("download")):
        raise ApiError(422, f"model {model!r} is not downloaded on this server", f"run `mgen download {model}` there first")


def _input_file(service: Service, ref: str, name: str) -> str:
    """The file an upload id or a take's id names (its first sample); the server's own path."""
    upload = service.store.upload(ref)
    if upload is not None:
        return str(service.options.uploads_dir / upload.file)
    job = service.store.get(ref)
    if job is not None and job.state == states.DONE and job.files:
        return str(service.options.out_dir / job.files[0])
    raise ApiError(422, f"{name}: there is no upload or finished take {ref!r}", "POST the audio to /v1/uploads and send its id")


def _job_json(service: Service, job: Job, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id, "state": job.state, "created": job.created, "started": job.started, "finished": job.finished,
        "model": job.model, "seed": job.seed, "attempts": job.attempts, "request": job.request, "error": job.error,
        "summary": job.summary, "url": f"/v1/generations/{job.id}",
        "files": [{"name": name, "audio": f"/v1/generations/{job.id}/audio?sample={i}",
                   "sidecar": f"/v1/generations/{job.id}/sidecar?sample={i}"} for i, name in enumerate(job.files)],
    }
    if job.state == states.QUEUED:
        data["position"] = service.store.position(job)
    if full and job.state == states.DONE:
        data["sidecars"] = [_read_json(service.options.out_dir / Path(name).with_suffix(".json").name) for name in job.files]
        data["plan"] = data["sidecars"][0].get("plan") if data["sidecars"] and data["sidecars"][0] else None
    elif full and job.model == service.worker.model_key:
        data["plan"] = service.worker.plan
    return data


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _final(job: Job) -> Event:
    if job.state == states.DONE:
        return Event(0, "done", {"files": job.files})
    if job.state == states.FAILED:
        return Event(0, "failed", job.error or {})
    return Event(0, "cancelled", {})


async def _stream(service: Service, job_id: str) -> AsyncIterator[str]:
    """queued (with the position) -> started -> phase/progress... -> done | failed | cancelled."""
    history, queue = service.bus.subscribe(job_id)
    try:
        job = service.store.get(job_id)  # read after subscribing: no transition falls in between
        if job is None:
            return
        if job.state in states.FINISHED:
            yield _final(job).frame
            return
        if job.state == states.QUEUED:
            yield Event(0, "queued", {"position": service.store.position(job)}).frame
        else:
            for event in history:
                yield event.frame
        waited = 0.0
        while not service.stopping.is_set():
            try:
                event = await asyncio.wait_for(queue.get(), 1.0)
            except TimeoutError:
                waited += 1.0
                if waited >= KEEPALIVE_S:
                    waited = 0.0
                    yield ": keep-alive\n\n"
                continue
            yield event.frame
            if event.kind in TERMINAL:
                return
    finally:
        service.bus.unsubscribe(job_id, queue)


async def _upload(service: Service, request: Request) -> dict[str, Any]:
    limit = service.options.limits.max_upload_bytes
    too_big = ApiError(413, f"the upload is larger than this server takes ({limit} bytes)", "send a shorter or compressed file")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:  # the multipart framing on top
        raise too_big
    form = await request.form(max_files=1, max_fields=2)
    part = form.get("file")
    if part is None or isinstance(part, str):
        raise ApiError(422, "no file in the upload", "send the audio as the multipart field `file`")
    suffix = Path(part.filename or "").suffix.lstrip(".").lower()
    upload_id = "u" + secrets.token_hex(8)
    name = f"{upload_id}.{suffix if suffix in FORMATS else 'audio'}"  # the server's name, never the client's
    folder = service.options.uploads_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    size = 0
    try:
        with path.open("wb") as out:
            while chunk := await part.read(1024 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_big
                out.write(chunk)
        if size == 0:
            raise ApiError(422, "the upload is empty (0 bytes)", "send an audio file")
        try:
            wave, rate = await asyncio.to_thread(read_audio, path)
        except AudioError:
            raise ApiError(415, f"{part.filename or 'the upload'} is not audio this server can read",
                           "send a WAV, FLAC, OGG or MP3 file") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    info = {"duration_s": wave.shape[-1] / rate, "sample_rate": rate, "channels": int(wave.shape[0]), "bytes": size}
    upload = service.store.add_upload(upload_id, name, part.filename or name, info)
    return {"id": upload.id, "name": upload.name, **info}

