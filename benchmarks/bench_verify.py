"""Speed of `mgen models verify` (sha256 of every file of a cached model), in MB/s.

Usage: PYTHONPATH=. python benchmarks/bench_verify.py [--mb 512] [--runs 3]
Writes a model folder with one random weights file of --mb megabytes into a temporary cache,
records its checksums as a download does, then times `verify_model` --runs times. The file was
just written, so it is read from the page cache: the figure is the hashing speed, the bound a
warm verify reaches; a cold one is bounded by the disk as well.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from musicgen_cli.store.cache import hash_files, mark_ready
from musicgen_cli.store.manifest import ModelEntry, load_manifest
from musicgen_cli.store.verify import verify_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="size of the weights file, MB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = load_manifest(tmp)
        entry = ModelEntry(key="bench", folder="bench", repo_id=None, revision=None)
        manifest.entries[entry.key] = entry
        folder = manifest.folder(entry)
        folder.mkdir(parents=True)
        with open(folder / "model.safetensors", "wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(1_000_000))
        (folder / "config.json").write_text("{}")
        mark_ready(folder, {"key": "bench", "files": hash_files(folder)})
        load = os.getloadavg()[0]
        for run in range(args.runs):
            start = time.perf_counter()
            check = verify_model(manifest, entry)
            seconds = time.perf_counter() - start
            assert check.ok, check
            print(f"run {run + 1}: {check.bytes_hashed / 1e6:,.0f} MB in {seconds:.2f} s = {check.bytes_hashed / seconds / 1e6:,.0f} MB/s")
        print(f"load average at start: {load:.1f}; cpu: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
