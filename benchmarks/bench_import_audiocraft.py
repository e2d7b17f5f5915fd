"""Time and memory of `import-audiocraft` on a checkpoint with real MusicGen shapes (random weights).

Usage: PYTHONPATH=.:tests python benchmarks/bench_import_audiocraft.py [--shape small] [--check]
Prints the checkpoint size, the phase timings and the peak resident memory of the conversion
(run in a child process) beside the size of the weights it converts.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


class Timer:
    def __init__(self) -> None:
        self.last, self.name, self.times = time.perf_counter(), None, {}

    def phase(self, name: str, detail: str = "") -> None:
        self._close()
        self.name = name

    def _close(self) -> None:
        now = time.perf_counter()
        if self.name:
            self.times[self.name] = now - self.last
        self.last = now

    def progress(self, update) -> None:
        pass

    def message(self, text: str, level: str = "info") -> None:
        pass


def run_import(src: Path, cache: Path, check: bool) -> None:
    """The measured part, in its own process so its peak memory is its own."""
    from musicgen_cli.importing.audiocraft import import_audiocraft

    timer = Timer()
    start = time.perf_counter()
    import_audiocraft([src], "bench", base="bench-base", check=check, cache_dir=cache, reporter=timer)
    timer._close()
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timer.times.items()) + f"; total {total:.1f}")
    print(f"import process peak RSS {peak / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="small", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--check", action="store_true", help="also run the smoke generation")
    parser.add_argument("--child", nargs=2, metavar=("SRC", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_import(Path(args.child[0]), Path(args.child[1]), args.check)
        return

    import os
    import subprocess

    from audiocraft_export import write_audiocraft

    from musicgen_cli.store.cache import mark_ready
    from musicgen_cli.store.manifest import ModelEntry, load_manifest
    from musicgen_cli.testing import ModelSpec, build_model, write_model_folder

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        base = write_model_folder(cache / "bench-base", ModelSpec(shape=args.shape))  # t5-base shapes
        mark_ready(base, {"key": "bench-base"})
        load_manifest(cache).register(ModelEntry(key="bench-base", folder="bench-base"))
        model = build_model(ModelSpec(shape=args.shape, seed=1))
        weights = sum(t.numel() * t.element_size() for n, t in model.state_dict().items() if not n.startswith("text_encoder."))
        src = write_audiocraft(Path(tmp) / "src", model)
        del model
        ckpt = sum(p.stat().st_size for p in src.iterdir())
        print(f"shape {args.shape}: audiocraft files {ckpt / 2**20:.0f} MiB, LM + codec weights {weights / 2**20:.0f} MiB")
        cmd = [sys.executable, __file__, "--child", str(src), str(cache)] + (["--check"] if args.check else [])
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


if __name__ == "__main__":
    main()
