"""The generate bar: decode steps of one or more windowed calls folded into audio frames, with
the monitor's readouts (RAM, CPU, VRAM) refreshed at most four times a second, and the peaks."""

from __future__ import annotations

import time
from dataclasses import asdict

from musicgen_cli.events import Progress, Reporter


class StepProgress:
    """`step(frames)` gives the on_step callback of one call that makes `frames` of the `total`;
    `done` counts the frames of finished calls, `current` what the bar shows now."""

    def __init__(self, reporter: Reporter, total: int, frame_rate: float):
        self.reporter, self.total, self.frame_rate = reporter, total, frame_rate
        self.done = self.current = self.steps = 0
        self.peaks = {"rss_bytes": 0.0, "vram_bytes": 0.0}
        self.readouts: dict = {}
        self._last = 0.0

    def step(self, frames: int):
        from musicgen_cli.planning.monitor import snapshot

        def on_step(step: int, step_total: int) -> None:
            self.steps += 1
            now = time.perf_counter()
            if now - self._last > 0.25 or step == step_total:
                snap = snapshot()
                self.peaks["rss_bytes"] = max(self.peaks["rss_bytes"], snap.rss_bytes)
                self.peaks["vram_bytes"] = max(self.peaks["vram_bytes"], sum(g.peak_allocated_bytes for g in snap.gpus))
                self._last = now
                self.readouts = asdict(snap)
            # Steps include the codebook delay of each window; the bar counts audio frames.
            self.current = min(self.total, self.done + round(frames * step / step_total))
            self.reporter.progress(Progress("generate", self.current, self.total, "frames",
                                            {**self.readouts, "steps": self.steps, "frame_rate": self.frame_rate}))

        return on_step

    def finish(self) -> dict[str, float]:
        """The peaks, with the process's own RSS high-water mark (which sampling can miss)."""
        from musicgen_cli.planning.monitor import snapshot

        self.peaks["rss_bytes"] = max(self.peaks["rss_bytes"], snapshot().peak_rss_bytes)
        return self.peaks
