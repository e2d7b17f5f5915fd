"""What long-form composition costs: a plain long clip vs the same length in sections, and a re-roll.

    python benchmarks/bench_longform.py --shape tiny --seconds 60 --repeats 3

Runs side by side in one process on one loaded model (same seed, the order rotated each round): plain `generate`, the same
length as four sections, and the sections with a forced re-roll (the first take's ending is
silenced, so the last window is generated and decoded again). Prints wall seconds (median)
and ratios to the plain clip.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicgen_cli.engine import codec  # noqa: E402
from musicgen_cli.engine.musicgen import GenerateSettings, load_model  # noqa: E402
from musicgen_cli.testing import ModelSpec, write_model_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mg = load_model(write_model_folder(Path(tmp) / args.shape, ModelSpec(shape=args.shape)), download=False)
        quarter = args.seconds / 4
        sections = tuple((i * quarter, p) for i, p in enumerate(["calm piano", "drums enter", "bass groove", "slow strings"]))
        plain = GenerateSettings(duration=args.seconds, seed=1)
        composed = GenerateSettings(duration=args.seconds, seed=1, segments=sections, max_rerolls=0)
        rerolled = GenerateSettings(duration=args.seconds, seed=1, segments=sections, max_rerolls=1)
        real_decode, calls = codec.decode, []

        def silence_first(model, codes, chunk_s=None):
            wave = real_decode(model, codes, chunk_s).clone()
            calls.append(1)
            if len(calls) == 1:
                wave[..., -3 * mg.sample_rate:] = 0
            return wave

        times: dict[str, list[float]] = {"plain": [], "sections": [], "sections + re-roll": []}
        variants = [("plain", plain), ("sections", composed), ("sections + re-roll", rerolled)]
        for repeat in range(args.repeats):
            # Rotated order each round, so a machine's drift does not favour one variant.
            for name, settings in variants[repeat % 3:] + variants[:repeat % 3]:
                calls.clear()
                codec.decode = silence_first if name.endswith("re-roll") else real_decode
                t0 = time.perf_counter()
                mg.generate("calm piano", settings)
                times[name].append(time.perf_counter() - t0)
        codec.decode = real_decode
    base = statistics.median(times["plain"])
    print(f"{args.shape}-shaped, {args.seconds:g} s, {args.repeats} runs each (median wall s, ratio to plain):")
    for name, values in times.items():
        print(f"  {name:20s} {statistics.median(values):7.2f} s  {statistics.median(values) / base:5.2f}x")


if __name__ == "__main__":
    main()
