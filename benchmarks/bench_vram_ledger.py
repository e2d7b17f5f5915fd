"""The plan's predicted peak VRAM against the VRAM ledger (musicgen_cli/testing/ledger.py) for
the released shapes on a simulated 8 GiB card: small, medium and large at 10 s and 30 s, continued
and with 512-token prompts (tests/test_vram_ledger.py checks four of them; the rest take one to
four minutes each on two CPU cores).

    PYTHONPATH=. python benchmarks/bench_vram_ledger.py            # every case
    PYTHONPATH=. python benchmarks/bench_vram_ledger.py large-30   # cases whose key contains this

Needs no GPU: the meta device stands in for it. Prints one row per case and exits 1 when a plan
is off the ledger by more than --tolerance.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicgen_cli.testing.ledger import Case, check  # noqa: E402

CASES = {
    "small-10": Case("small", 10), "small-30": Case("small", 30),
    "medium-10": Case("medium", 10), "medium-30": Case("medium", 30),
    "large-10": Case("large", 10), "large-30": Case("large", 30),
    "small-8-continued": Case("small", 8, prompt_s=12), "large-8-continued": Case("large", 8, prompt_s=12),
    "small-10-512": Case("small", 10, long_prompt=True), "medium-10-512": Case("medium", 10, long_prompt=True),
    "large-10-512": Case("large", 10, long_prompt=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="run the cases whose key contains one of these")
    parser.add_argument("--tolerance", type=float, default=0.10, help="largest |plan / ledger - 1| (default 0.10)")
    args = parser.parse_args()
    keys = [k for k in CASES if not args.only or any(o in k for o in args.only)]
    failed = False
    print(f"{'case':40} {'layers in RAM':>13} {'plan GiB':>9} {'ledger GiB':>10} {'error':>7} {'wall s':>7}")
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        for key in keys:
            start = time.perf_counter()
            checked = check(CASES[key], Path(tokenizer_dir))
            ram = len(checked.plan.offload.cpu_layers)
            print(f"{checked.case.name:40} {ram:>13} {checked.planned_bytes / 2**30:>9.3f} "
                  f"{checked.run.peak_bytes / 2**30:>10.3f} {checked.error:>+7.1%} {time.perf_counter() - start:>7.0f}", flush=True)
            failed |= abs(checked.error) > args.tolerance
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
