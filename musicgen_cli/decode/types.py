"""What an engine is asked to do: sampling settings, one window's request, the model's codebook
layout. Shared by the windowing, the fast loop, the sampler and the reference engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from musicgen_cli import arch
from musicgen_cli.arch import CONTEXT_SECONDS  # noqa: F401  (the windowing's default, re-exported)

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Sampling:
    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0  # 0 = off
    guidance_scale: float = 3.0  # <= 1 disables CFG

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1


@dataclass(frozen=True)
class WindowRequest:
    """One window of work for an engine: conditioning, what to continue from, and how far."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    frames: int
    sampling: Sampling
    prompt_codes: torch.Tensor | None
    melody_features: torch.Tensor | None


def layout(model) -> tuple[int, int, int]:
    """(codebooks, audio channels, pad token) of a loaded MusicGen."""
    config = model.decoder.config
    return config.num_codebooks, config.audio_channels, model.generation_config.pad_token_id


def decode_steps(model, frames: int) -> int:
    """Forward passes that yield `frames` new frames of a loaded model (arch.decode_steps)."""
    num_codebooks, channels, _ = layout(model)
    return arch.decode_steps(frames, num_codebooks, channels)
