"""What one generation asks for: the one place every default of `mgen generate` lives.

Kept apart from the engine so the CLI can read the defaults without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from musicgen_cli.arch import CONTEXT_SECONDS, WINDOW_SECONDS
from musicgen_cli.engine.validate import check_settings
from musicgen_cli.errors import MgenError


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
    decoder: str = "encodec"  # "encodec" (the model's codec) or "mbd" (MultiBand Diffusion, engine/mbd.py)
    window_s: float = WINDOW_SECONDS
    context_s: float = CONTEXT_SECONDS
    continuation: Path | None = None
    melody: Path | None = None
    keep_prompt: bool = True  # a continuation's clip holds the given audio, then the new part
    # Long form (engine/longform.py): sections as (start seconds, prompt), how the piece ends,
    # a seamless loop, and re-rolls of a last window that ends in silence.
    segments: tuple[tuple[float, str], ...] | None = None
    ending: str = "cut"
    loop: bool = False
    max_rerolls: int = 2
    tail_silence_db: float = -50.0  # LUFS over the last tail_silence_s below this: a dead tail
    tail_silence_s: float = 2.0

    @property
    def composed(self) -> bool:
        """Made section by section with a shaped ending (engine/longform.py)."""
        return bool(self.segments) or self.ending != "cut" or self.loop

    def validate(self, max_window_s: float = math.inf) -> None:
        """Refuse bad numbers and unusable input files before any work (see engine.validate)."""
        check_settings(self, max_window_s)
        self._validate_long_form()

    def _validate_long_form(self) -> None:
        from musicgen_cli.engine.segments import ENDINGS, LOOP_CROSSFADE_S, check_fits

        if self.ending not in ENDINGS:
            raise MgenError(f"unknown ending {self.ending!r}", f"use --ending {', '.join(ENDINGS)}")
        if self.loop and self.ending != "cut":
            raise MgenError("a loop has no ending", "drop --ending, or drop --loop")
        if self.loop and self.duration <= 2 * LOOP_CROSSFADE_S:
            raise MgenError(f"a {self.duration:g} s loop is too short to crossfade", f"use --duration above {2 * LOOP_CROSSFADE_S:g}")
        if not 0 <= self.max_rerolls <= 10:
            raise MgenError(f"--max-rerolls {self.max_rerolls} is out of range", "use 0 to 10")
        if not self.tail_silence_s >= 0.4:  # one BS.1770 gating block
            raise MgenError(f"--tail-silence-s {self.tail_silence_s:g} is shorter than 0.4 s", "use e.g. --tail-silence-s 2")
        if not -70 <= self.tail_silence_db <= 0:
            raise MgenError(f"--tail-silence-db {self.tail_silence_db:g} is out of range", "use a loudness between -70 and 0 LUFS")
        if self.segments:
            check_fits(self.segments, self.duration)
