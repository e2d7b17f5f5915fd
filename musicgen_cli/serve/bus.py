"""Job events from the worker thread to the server's event streams.

The worker publishes from its own thread; each subscriber is an asyncio queue on the server's
loop, fed through `call_soon_threadsafe`. A late subscriber first gets what it missed: every
event of the job's current run except progress, of which only the latest is kept.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Event:
    id: int
    kind: str  # queued, started, phase, progress, message, done, failed, cancelled, requeued
    data: dict[str, Any]
    frame: str = field(init=False)  # as server-sent events write it, made once for every listener

    def __post_init__(self) -> None:
        text = f"id: {self.id}\nevent: {self.kind}\ndata: {json.dumps(self.data, default=str)}\n\n"
        object.__setattr__(self, "frame", text)


class Bus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._history: dict[str, list[Event]] = {}
        self._subscribers: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        event = Event(next(self._ids), kind, data)
        with self._lock:
            history = self._history.setdefault(job_id, [])
            if kind == "started":
                history.clear()  # a re-run starts its story again
            if kind == "progress" and history and history[-1].kind == "progress":
                history[-1] = event
            else:
                history.append(event)
            if kind in TERMINAL:
                self._history.pop(job_id, None)
            subscribers = list(self._subscribers.get(job_id, ()))
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # that loop has closed: the server is stopping
                pass

    def subscribe(self, job_id: str) -> tuple[list[Event], asyncio.Queue]:
        """What happened so far in the job's current run, and a queue of what comes next."""
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._subscribers.setdefault(job_id, []).append((asyncio.get_running_loop(), queue))
            return list(self._history.get(job_id, ())), queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue) -> None:
        with self._lock:
            subscribers = [s for s in self._subscribers.get(job_id, ()) if s[1] is not queue]
            if subscribers:
                self._subscribers[job_id] = subscribers
            else:
                self._subscribers.pop(job_id, None)

    def listeners(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscribers.values())
