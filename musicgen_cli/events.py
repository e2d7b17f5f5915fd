"""The one channel through which the engine tells a front end what it is doing.

The engine never imports Typer or Rich; it calls a Reporter. The CLI supplies a Rich one,
scripts may pass their own, and `NullReporter` keeps library use silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Progress:
    """One update of a long task: `done` of `total` in `unit` (bytes, frames, items...)."""

    task: str
    done: float
    total: float | None
    unit: str = ""
    readouts: dict[str, Any] = field(default_factory=dict)


class Reporter(Protocol):
    def phase(self, name: str, detail: str = "") -> None:
        """A new phase starts (plan, load, encode text, generate, decode audio, write, ...)."""

    def progress(self, update: Progress) -> None:
        """Progress inside the current phase."""

    def message(self, text: str, level: str = "info") -> None:
        """A line for the user: info, warning."""


class NullReporter:
    def phase(self, name: str, detail: str = "") -> None:
        pass

    def progress(self, update: Progress) -> None:
        pass

    def message(self, text: str, level: str = "info") -> None:
        pass
