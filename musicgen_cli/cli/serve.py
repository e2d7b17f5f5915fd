"""`mgen serve`: the web page and the HTTP API on one loaded model (musicgen_cli.serve does the work)."""

from __future__ import annotations

from pathlib import Path

import typer

from musicgen_cli import config
from musicgen_cli.cli.options import (
    CacheDirOpt,
    MachineOptions,
    ModelOptions,
    OfflineOpt,
    console,
    err_console,
    reporter_for,
    uses,
)


@uses(model=ModelOptions, machine=MachineOptions)
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token or --insecure-no-auth."),
    port: int = typer.Option(8600, "--port", help="TCP port."),
    out_dir: Path | None = typer.Option(None, "--out-dir", "-o", help="Folder for the takes (default: serve/takes in the data folder)."),
    token: str | None = typer.Option(None, "--token", help="Bearer token for the API and the page's login (default: MGEN_TOKEN).", show_default=False),
    insecure_no_auth: bool = typer.Option(False, "--insecure-no-auth", help="Listen on a non-loopback address without a token."),
    max_duration: float = typer.Option(300.0, "--max-duration", help="Longest clip a request may ask for, in seconds.", rich_help_panel="Limits"),
    max_queue: int = typer.Option(100, "--max-queue", help="Jobs waiting at most; more are answered 429.", rich_help_panel="Limits"),
    max_upload: str = typer.Option("20MiB", "--max-upload", help="Largest melody or continuation upload.", rich_help_panel="Limits"),
    max_prompt: int = typer.Option(2000, "--max-prompt", help="Longest prompt, in characters.", rich_help_panel="Limits"),
    offline: bool = OfflineOpt,
    cache_dir: Path | None = CacheDirOpt,
    *,
    model: ModelOptions,
    machine: MachineOptions,
) -> None:
    """Serve a web page and an HTTP API (OpenAPI at /docs) on one loaded model, with a job queue that survives restarts."""
    from musicgen_cli.serve import require

    require("fastapi", "uvicorn", "multipart")
    from musicgen_cli.serve.request import Limits
    from musicgen_cli.serve.server import check_exposure, prepare, run
    from musicgen_cli.units import parse_size

    name = model.name()
    token = token or config.token()
    check_exposure(host, token, insecure_no_auth)
    limits = Limits(max_prompt_chars=max_prompt, max_duration_s=max_duration, max_upload_bytes=parse_size(max_upload), max_queue=max_queue)
    options = _serve_options(name, out_dir, limits, offline, cache_dir, machine)
    service = prepare(options, token)
    queued = service.store.depth()
    with reporter_for(False, "mgen serve: loading") as reporter:
        service.worker.load(options.model, reporter)
    console.print(
        f"serving {service.worker.model_key} on http://{host}:{port}/ (API: /v1, docs: /docs); takes go to {options.out_dir}/"
        + (f"; {queued} job(s) waiting from before" if queued else "") + ". Ctrl-C stops.",
        highlight=False, soft_wrap=True,
    )
    run(service, host, port)
    err_console.print("serve: stopped", highlight=False)


def _serve_options(name: str, out_dir: Path | None, limits, offline: bool, cache_dir: Path | None, machine: MachineOptions):
    """What the server keeps for its life: the model, where jobs and takes go, how it loads, its limits."""
    from musicgen_cli.serve.worker import ServeOptions
    from musicgen_cli.store.cache import data_root

    data = data_root() / "serve"
    threads = machine.threads()
    load = {"cache_dir": cache_dir, "machine": machine.machine(cache_dir), "download": not offline, **machine.plan_kwargs()}
    return ServeOptions(model=name, data_dir=data, out_dir=out_dir or data / "takes", load=load, limits=limits,
                        extra={"torch_threads": threads})


EXAMPLES = """Examples:

  mgen serve --size small                 # then open http://127.0.0.1:8600/

  mgen serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"
"""
