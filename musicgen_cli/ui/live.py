"""The one live-display base: a redrawn view on a terminal, throttled plain lines elsewhere.

Every live view of mgen (the generate panel, download progress, the batch panel) is a
`LiveDisplay`: on a terminal Rich redraws `render()` at `REFRESH_PER_S`; in a pipe or a log
file the view prints plain lines, at most one per `PLAIN_EVERY_S` for each thing it tracks
(`due`), and a view that only polls (`poll_line`) gets a thread asking it that often.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console, RenderableType
from rich.live import Live

from musicgen_cli.ui.console import sane_width

REFRESH_PER_S = 4  # terminal redraws: smooth enough, and a fast decode loop never waits on drawing
PLAIN_EVERY_S = 2.0  # plain progress lines: readable in a CI log, not a flood


class LiveDisplay:
    """Base of the live views. Use as a context manager around the work it shows."""

    def __init__(self, console: Console | None = None, *, interval: float = PLAIN_EVERY_S) -> None:
        self.console = console or sane_width(Console(stderr=True))
        self.live_mode = self.console.is_terminal
        self.interval = interval
        self._live: Live | None = None
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what a view provides ---------------------------------------------------------------
    def render(self) -> RenderableType | None:
        """The view on a terminal; None: this view draws nothing live."""
        return None

    def poll_line(self) -> str | None:
        """For views that poll (nobody calls them): the plain line now, asked every interval."""
        return None

    # -- the machinery ------------------------------------------------------------------------
    def __enter__(self) -> LiveDisplay:
        if self.live_mode:
            if type(self).render is not LiveDisplay.render:
                self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=REFRESH_PER_S, transient=False)
                self._live.__enter__()
        elif type(self).poll_line is not LiveDisplay.poll_line:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def due(self, key: str = "", *, finished: bool = False, first_waits: bool = False) -> bool:
        """Whether a plain line for `key` may print now: once per interval, and always when it finishes.

        With `first_waits` the first line of a key waits one interval (short tasks print only
        their finishing line).
        """
        now = time.monotonic()
        last = self._last.get(key)
        if last is None:
            last = self._last[key] = now if first_waits else float("-inf")
        if finished or now - last >= self.interval:
            self._last[key] = now
            return True
        return False

    def _poll(self) -> None:
        previous = ""
        while not self._stop.wait(self.interval):
            line = self.poll_line()
            if line and line != previous:
                self.console.print(line, highlight=False)
                previous = line
