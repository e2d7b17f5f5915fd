"""`mgen serve`: one loaded model behind an HTTP API and a web page, with a job queue in SQLite.

store.py keeps jobs and uploads; request.py checks a request with the CLI's validators;
worker.py runs the queue on the model; bus.py carries its events to the streams; app.py is
the FastAPI app; server.py starts and stops it; client.py sends `mgen generate --server` jobs.
The page (static/) is plain HTML, CSS and JavaScript shipped in the package: no network needed.
FastAPI, uvicorn and python-multipart come with the `serve` extra.
"""

from __future__ import annotations

import importlib.util

from musicgen_cli.errors import MgenError


def require(*modules: str) -> None:
    """MgenError naming the extra to install when a module it brings is missing (checked before any work)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MgenError(f"{', '.join(missing)} is not installed (mgen's `serve` extra)", "pip install 'mgen[serve]'")
