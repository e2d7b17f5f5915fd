"""Measuring helpers only the benchmarks use: the peak of a block, the resident mapped weights.

Imported by the benchmark scripts as `_measure` (they run as scripts, with benchmarks/ on sys.path).
"""

from __future__ import annotations

import threading

from musicgen_cli.planning.monitor import anon_rss_bytes


def mapped_weights_bytes(suffix: str = ".safetensors") -> int:
    """Resident bytes of memory-mapped weight files (from_pretrained maps safetensors on the CPU,
    so weights are file-backed, not anonymous). Parses /proc/self/smaps: call it once, not per step."""
    total, path = 0, ""
    try:
        with open("/proc/self/smaps") as smaps:
            for line in smaps:
                head = line.split(None, 5)
                if "-" in head[0]:
                    path = head[5].strip() if len(head) > 5 else ""
                elif line.startswith("Rss:") and path.endswith(suffix):
                    total += int(head[1]) * 1024
    except OSError:
        return 0
    return total


class PeakSampler:
    """Samples anon_rss_bytes() on a thread while the block runs; `.peak` is the highest seen."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, anon_rss_bytes())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anon_rss_bytes())
