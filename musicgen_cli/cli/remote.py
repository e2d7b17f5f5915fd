"""`mgen generate --server URL`: the job runs on a warm `mgen serve`; the panel and the files are here."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from musicgen_cli import config
from musicgen_cli.cli.options import console, reporter_for
from musicgen_cli.errors import MgenError

if TYPE_CHECKING:
    from musicgen_cli.jobs.request import Request


def generate_on_server(url: str, request: Request, model: str | None, *, replay: bool, quiet: bool, as_json: bool) -> None:
    """`request` (validated here) made by the server at `url`; `model` None: the one it has loaded."""
    if replay:
        raise MgenError("--from-sidecar re-runs a clip on this machine", "drop --server (or MGEN_SERVER)")
    from musicgen_cli.serve import require

    require("httpx")
    from musicgen_cli.serve.client import Client, generate_remote

    with Client(url, config.token()) as client, reporter_for(quiet or as_json, f"mgen generate on {url}") as reporter:
        made = generate_remote(client, request, model, reporter)
    summary = made.job.get("summary") or {}
    if as_json:
        print(json.dumps({"files": [str(p) for p in made.files], "seed": made.job["seed"], "server": url, "job": made.job["id"],
                          "timings_s": summary.get("timings_s"), "steps_per_s": summary.get("steps_per_s"),
                          "realtime_factor": summary.get("realtime_factor")}, indent=2))
        return
    if quiet:
        print(*made.files, sep="\n")
        return
    for path in made.files:
        console.print(f"[green]wrote[/] {path}  (+ {path.with_suffix('.json').name})", highlight=False)
    console.print(f"seed {made.job['seed']}; {summary.get('duration_s', 0):g} s of audio x {len(made.files)} on {url}: "
                  f"{summary.get('steps_per_s') or 0:.1f} steps/s, {summary.get('realtime_factor') or 0:.2f}x real time",
                  highlight=False, soft_wrap=True)
