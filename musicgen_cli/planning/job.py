"""The job a plan is made for, derived from generation settings in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from musicgen_cli.arch import WINDOW_SECONDS
from musicgen_cli.planning import estimates as K


class SettingsLike(Protocol):
    """What planning reads of `engine.musicgen.GenerateSettings` (planning sits below engine)."""

    duration: float
    num_samples: int
    guidance: float
    window_s: float
    continuation: Path | None
    decoder: str


@dataclass(frozen=True)
class Job:
    duration_s: float
    num_samples: int = 1
    guidance: bool = True
    window_s: float = WINDOW_SECONDS
    # Seconds of given audio the clip continues: its frames fill the attention cache before the
    # new ones, and EnCodec decodes them with the new part.
    prompt_s: float = 0.0
    # T5 tokens of the longest prompt: cross-attention holds this many keys and values per row.
    text_tokens: int = K.TEXT_TOKENS
    decoder: str = "encodec"  # "mbd": MultiBand Diffusion turns the codes into audio (planning/diffusion.py)

    @classmethod
    def from_settings(cls, settings: SettingsLike, *, max_window_s: float | None = None, prompts: Iterable[str] = ()) -> Job:
        """The job for these settings, its window clamped to the longest the model can hold.

        The duration stays whole: the planner caps the attention cache at one window itself
        and sizes EnCodec's decode and the returned audio for the whole clip. With `prompts`
        known, cross-attention is planned for the longest (a T5 piece covers at least one
        character, so characters + 1 bounds its tokens without the tokenizer).
        """
        window = settings.window_s if max_window_s is None else min(settings.window_s, max_window_s)
        return cls(
            duration_s=settings.duration,
            num_samples=settings.num_samples,
            guidance=settings.guidance > 1,
            window_s=window,
            prompt_s=audio_seconds(settings.continuation) if settings.continuation else 0.0,
            text_tokens=text_tokens(prompts),
            decoder=settings.decoder,
        )

    @classmethod
    def covering(cls, settings: Iterable[SettingsLike], *, max_window_s: float | None = None) -> Job:
        """One job as large as the largest of several (a batch loads its model once for all)."""
        return cls.covering_jobs([cls.from_settings(s, max_window_s=max_window_s) for s in settings])

    @classmethod
    def covering_jobs(cls, jobs: list[Job]) -> Job:
        """One job as large as the largest of `jobs`."""
        if not jobs:
            raise ValueError("no settings to plan for")
        return cls(
            duration_s=max(j.duration_s for j in jobs),
            num_samples=max(j.num_samples for j in jobs),
            guidance=any(j.guidance for j in jobs),
            window_s=max(j.window_s for j in jobs),
            prompt_s=max(j.prompt_s for j in jobs),
            text_tokens=max(j.text_tokens for j in jobs),
            decoder="mbd" if any(j.decoder == "mbd" for j in jobs) else "encodec",
        )


def text_tokens(prompts: Iterable[str]) -> int:
    """The T5 tokens to plan for the longest of `prompts` (the default budget when none is known)."""
    longest = max((len(p) for p in prompts), default=None)
    return K.TEXT_TOKENS if longest is None else min(K.MAX_TEXT_TOKENS, longest + 1)


def audio_seconds(path: Path) -> float:
    """The length of an audio file from its header (the validator has checked it reads)."""
    import soundfile

    return float(soundfile.info(str(path)).duration)
