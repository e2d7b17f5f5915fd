"""The job a plan is made for, derived from generation settings in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from musicgen_cli.arch import WINDOW_SECONDS


class SettingsLike(Protocol):
    """What planning reads of `engine.musicgen.GenerateSettings` (planning sits below engine)."""

    duration: float
    num_samples: int
    guidance: float
    window_s: float


@dataclass(frozen=True)
class Job:
    duration_s: float
    num_samples: int = 1
    guidance: bool = True
    window_s: float = WINDOW_SECONDS

    @classmethod
    def from_settings(cls, settings: SettingsLike, *, max_window_s: float | None = None) -> Job:
        """The job for these settings, its window clamped to the longest the model can hold.

        The duration stays whole: the planner caps the attention cache at one window itself
        and sizes EnCodec's decode and the returned audio for the whole clip.
        """
        window = settings.window_s if max_window_s is None else min(settings.window_s, max_window_s)
        return cls(
            duration_s=settings.duration,
            num_samples=settings.num_samples,
            guidance=settings.guidance > 1,
            window_s=window,
        )

    @classmethod
    def covering(cls, settings: Iterable[SettingsLike], *, max_window_s: float | None = None) -> Job:
        """One job as large as the largest of several (a batch loads its model once for all)."""
        jobs = [cls.from_settings(s, max_window_s=max_window_s) for s in settings]
        if not jobs:
            raise ValueError("no settings to plan for")
        return cls(
            duration_s=max(j.duration_s for j in jobs),
            num_samples=max(j.num_samples for j in jobs),
            guidance=any(j.guidance for j in jobs),
            window_s=max(j.window_s for j in jobs),
        )
