"""`mgen serve`: one loaded model behind an HTTP API and a web page, with a job queue in SQLite.

store.py keeps jobs and uploads; request.py checks a request with the CLI's validators;
worker.py runs the queue on the model; bus.py carries its events to the streams; app.py is
the FastAPI app; server.py starts and stops it; client.py sends `mgen generate --server` jobs.
The page (static/) is plain HTML, CSS and JavaScript shipped in the package: no network needed.
FastAPI, uvicorn and python-multipart come with the `serve` extra.
"""
