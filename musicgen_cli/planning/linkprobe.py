"""The host-to-device link of each GPU, measured once per machine and cached.

Whether RAM layers are streamed to the GPU or computed on the CPU depends on pinned
host-to-device bandwidth against how fast the CPU runs a RAM layer's projections: a decode step
multiplies two rows (a sample and its CFG twin) by half-precision weights, which a CPU runs far
below its memory bandwidth (0.5-0.8 GB/s of weights measured, against 5-20 GB/s for a float32
`sum()`). GPU plans keep RAM layers in bfloat16, so that is the rate measured. Both are measured
at probe time, in a child process (its CUDA context and 64 MiB buffers die with it, before free
VRAM is read), and the plan (not the decode loop) makes the choice. Results go to `link-bandwidth.json` under the
cache root, keyed by GPU, driver-visible index and torch version, so later runs read them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from musicgen_cli.store.cache import atomic_write_text, cache_root

PROBE_BYTES = 64 * 2**20
PROBE_PROJECTION_OUT = 4096  # output channels of the probe's projection (large's feed-forward width is 8192)
CACHE_FILE = "link-bandwidth.json"


def link_bandwidths(index: int, name: str, cache_dir: str | Path | None = None) -> tuple[float, float]:
    """(pinned host->device, host memory read) in bytes/s for GPU `index`."""
    import torch

    path = cache_root(cache_dir) / CACHE_FILE
    key = f"{index}|{name}|torch {torch.__version__}|projection"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return float(cached[key][0]), float(cached[key][1])
    found = measure_in_child(index)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({**cached, key: list(found)}, indent=1))
    except OSError:
        pass  # a read-only cache measures again next time
    return found


def measure_in_child(index: int) -> tuple[float, float]:
    """`measure` on GPU `index` in a child process: the CUDA context the copies need dies with
    it, so probing a GPU no plan uses leaves nothing on it (the child inherits
    CUDA_VISIBLE_DEVICES, so its index is ours)."""
    import subprocess
    import sys

    code = ("import json, sys, torch; from musicgen_cli.planning.linkprobe import measure; "
            "print(json.dumps(measure(torch.device('cuda', int(sys.argv[1])))))")
    done = subprocess.run([sys.executable, "-c", code, str(index)], capture_output=True, text=True, timeout=300, check=True)
    link, host_read = json.loads(done.stdout.strip().splitlines()[-1])
    return float(link), float(host_read)


def measure(device) -> tuple[float, float]:
    """Best of three 64 MiB copies (pinned -> device), and of three two-row projections through
    64 MiB of bfloat16 weights (bytes of weights per second); memory freed afterwards."""
    import torch
    import torch.nn.functional as F

    host = torch.arange(PROBE_BYTES // 4, dtype=torch.float32)  # distinct pages: a VM host may merge identical ones
    host = host.pin_memory() if device.type == "cuda" else host
    target = torch.empty_like(host, device=device)

    def best(fn) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return PROBE_BYTES / max(min(times), 1e-9)

    link = best(lambda: target.copy_(host, non_blocking=True))
    target = None
    # a local generator: the process-wide one carries the user's seed
    weight = torch.randn(PROBE_PROJECTION_OUT, PROBE_BYTES // 2 // PROBE_PROJECTION_OUT,
                         generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    rows = torch.ones(2, weight.shape[1], dtype=torch.bfloat16)
    found = link, best(lambda: F.linear(rows, weight))
    host = weight = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return found
