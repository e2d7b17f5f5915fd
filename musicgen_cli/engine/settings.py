"""What one generation asks for: the one place every default of `mgen generate` lives.

Kept apart from the engine so the CLI can read the defaults without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from musicgen_cli.arch import WINDOW_SECONDS
from musicgen_cli.errors import MgenError

ENGINES = ("fast", "reference")


@dataclass(frozen=True)
class GenerateSettings:
    duration: float = 10.0
    num_samples: int = 1
    seed: int | None = None
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    guidance: float = 3.0
    greedy: bool = False
    engine: str = "fast"  # "fast" (our static-cache loop) or "reference" (transformers' generate)
    window_s: float = WINDOW_SECONDS
    context_s: float = 10.0
    continuation: Path | None = None
    melody: Path | None = None

    def validate(self, max_window_s: float) -> None:
        if not 0 < self.duration <= 3600:
            raise MgenError(f"duration {self.duration} s is out of range", "use --duration between 0 and 3600 seconds")
        if self.num_samples < 1:
            raise MgenError("--num-samples must be at least 1", "use -n 1 or more")
        if not 0 < self.window_s <= max_window_s:
            raise MgenError(f"window of {self.window_s} s is out of range", f"use a window up to {max_window_s:.0f} s")
        if not 0 <= self.context_s < self.window_s:
            raise MgenError("the context must be shorter than the window", "lower --context or raise --window")
        if self.temperature <= 0 and not self.greedy:
            raise MgenError("temperature must be > 0", "use --temperature 1.0, or --greedy")
        if self.engine not in ENGINES:
            raise MgenError(f"unknown engine {self.engine!r}", "use --engine fast or --engine reference")
