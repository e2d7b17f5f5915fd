"""Starting and stopping `mgen serve`: recover what a dead server left, load the model, run uvicorn.

SIGTERM (and Ctrl-C) stop cleanly: the event streams end, the running job is stopped between
two steps and stays queued, and the store is closed. A SIGKILL leaves the job marked running;
`recover` puts it back in the queue on the next start and removes whatever it had written.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from musicgen_cli.errors import MgenError
from musicgen_cli.serve.app import Service, create_app
from musicgen_cli.serve.bus import Bus
from musicgen_cli.serve.store import Job, JobStore
from musicgen_cli.serve.worker import ServeOptions, Worker


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Loopback needs nothing; any other address needs a token or an explicit opt-out."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token and not insecure:
        raise MgenError(f"{host} is reachable from other machines and the server has no token",
                        "set a token (--token or MGEN_TOKEN), or pass --insecure-no-auth")


def recover(store: JobStore, out_dir: Path) -> list[Job]:
    """Jobs a killed server was running: queued again, their files (finished or not) removed."""
    from musicgen_cli.jobs.pairs import recover_leftovers

    if out_dir.is_dir():
        recover_leftovers(out_dir)
    jobs = store.requeue_interrupted()
    for job in jobs:
        for path in out_dir.glob(f"{job.seq:04d}-*"):
            path.unlink(missing_ok=True)
    return jobs


def prepare(options: ServeOptions, token: str | None = None) -> Service:
    """The store (recovered), the bus and a worker with no model yet."""
    store = JobStore(options.data_dir / "jobs.sqlite3")
    recover(store, options.out_dir)
    bus = Bus()
    return Service(options=options, store=store, bus=bus, worker=Worker(options, store, bus), token=token)


def run(service: Service, host: str, port: int) -> None:
    """Serve until SIGTERM or Ctrl-C (the model is loaded first: `service.worker.load`)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's own re-raises the signal once stopped; a server that stopped cleanly exits 0
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            before = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in before.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig, frame) -> None:
            # Event streams and the running job end now, so the graceful shutdown has nothing to wait for.
            service.stopping.set()
            service.worker.request_stop()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(create_app(service), host=host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                            access_log=False)
    Server(config).run()
