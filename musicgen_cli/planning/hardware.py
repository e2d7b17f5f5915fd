"""What the machine has: GPUs, RAM, cores, disk — probed, or simulated for planning.

A simulated machine lets a user plan for hardware they do not own (`--gpu-mem 8GiB`) and
lets the planner be tested on a CPU-only box. Nothing here loads a model.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from musicgen_cli.errors import MgenError, ValidationError
from musicgen_cli.planning.estimates import (
    CUDA_CONTEXT_BYTES,
    SIMULATED_GPU_BANDWIDTH,
    gpu_bandwidth,
)


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    capability: tuple[int, int]
    bf16: bool
    bandwidth_bytes_s: float
    # Measured once per machine (linkprobe); None for simulated GPUs (the plan uses estimates).
    h2d_bytes_s: float | None = None
    host_read_bytes_s: float | None = None


@dataclass(frozen=True)
class Machine:
    gpus: tuple[GPU, ...]
    ram_total_bytes: int
    ram_available_bytes: int
    logical_cores: int
    physical_cores: int
    disk_free_bytes: int | None
    simulated: tuple[str, ...] = field(default_factory=tuple)  # which parts were overridden
    # Anonymous memory the probing process already holds (the runtime it will load in, or more
    # when it already holds models); 0 when RAM is simulated.
    process_anon_bytes: int = 0

    def summary(self) -> dict:
        data = asdict(self)
        data["gpus"] = [asdict(g) | {"capability": list(g.capability)} for g in self.gpus]
        data["simulated"] = list(self.simulated)
        return data


def _no_gpu_driver() -> bool:
    """No CUDA (or ROCm) driver is visible, so torch would find no GPU: answered without
    importing torch (a second or more). Linux shows a driver as one of these device files (WSL2
    as /dev/dxg); macOS has no CUDA; elsewhere torch is asked."""
    if sys.platform == "darwin":
        return True
    if sys.platform.startswith("linux"):
        return not any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg"))
    return False


def _probe_gpus(cache_dir: str | Path | None = None) -> tuple[GPU, ...]:
    if _no_gpu_driver():
        return ()
    try:
        import torch
    except ImportError:
        return ()
    if not torch.cuda.is_available():
        return ()
    from musicgen_cli.planning.gpu_memory import free_bytes
    from musicgen_cli.planning.linkprobe import link_bandwidths

    gpus = []
    # Properties come from the runtime without a context; free memory from the driver (gpu_memory).
    every = [torch.cuda.get_device_properties(index) for index in range(torch.cuda.device_count())]
    links = [link_bandwidths(index, props.name, cache_dir) for index, props in enumerate(every)]
    # After the link probes (their buffers are gone); a build without UUIDs (ROCm) asks a child.
    free = free_bytes([str(getattr(props, "uuid", "")) for props in every])
    for index, props in enumerate(every):
        h2d, host_read = links[index]
        capability = (props.major, props.minor)
        gpus.append(
            GPU(
                index=index,
                name=props.name,
                total_bytes=int(props.total_memory),
                free_bytes=int(free[index]),
                capability=capability,
                bf16=capability >= (8, 0),
                bandwidth_bytes_s=gpu_bandwidth(props.name),
                h2d_bytes_s=h2d,
                host_read_bytes_s=host_read,
            )
        )
    return tuple(gpus)


def probe(cache_dir: str | Path | None = None, gpus: bool = True) -> Machine:
    """The real machine now. `cache_dir` is where free disk is measured (default: the cache root);
    `gpus=False` skips looking for GPUs (a plan that simulates them or runs without)."""
    import psutil

    from musicgen_cli.planning.monitor import anon_rss_bytes
    from musicgen_cli.store.cache import cache_root

    memory = psutil.virtual_memory()
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return Machine(
        gpus=_probe_gpus(cache_dir) if gpus else (),
        ram_total_bytes=int(memory.total),
        ram_available_bytes=int(memory.available),
        logical_cores=int(logical),
        physical_cores=int(physical),
        disk_free_bytes=_disk_free(cache_root(cache_dir)),
        process_anon_bytes=anon_rss_bytes(),
    )


def _disk_free(path: Path) -> int | None:
    # The cache may not exist yet: measure the nearest existing parent.
    for candidate in (path, *path.parents):
        if candidate.exists():
            return int(shutil.disk_usage(candidate).free)
    return None


# A simulated GPU is a current consumer card (Ampere, compute capability 8.6) unless told otherwise.
SIMULATED_CAPABILITY = (8, 6)


def parse_capability(text: str | None) -> tuple[int, int]:
    """'7.5' -> (7, 5); None -> the simulated default."""
    if text is None:
        return SIMULATED_CAPABILITY
    match = re.match(r"^\s*(\d+)\.(\d)\s*$", str(text))
    if not match:
        raise MgenError(f"cannot read compute capability {text!r}", "give it as major.minor, like 7.5 or 8.6")
    return int(match.group(1)), int(match.group(2))


def simulated_gpu(index: int, total_bytes: int, capability: tuple[int, int] = SIMULATED_CAPABILITY) -> GPU:
    """A card of that size and compute capability; mem_get_info would show it minus the CUDA
    context. bfloat16 needs Ampere (8.0) or newer."""
    return GPU(
        index=index,
        name=f"simulated {total_bytes / 2**30:.0f} GiB GPU (sm {capability[0]}.{capability[1]})",
        total_bytes=total_bytes,
        free_bytes=max(0, total_bytes - CUDA_CONTEXT_BYTES),
        capability=tuple(capability),
        bf16=tuple(capability) >= (8, 0),
        bandwidth_bytes_s=SIMULATED_GPU_BANDWIDTH,
    )


def simulate(
    machine: Machine,
    gpu_mem: list[int] | None = None,
    ram: int | None = None,
    cores: int | None = None,
    no_gpu: bool = False,
    capability: tuple[int, int] = SIMULATED_CAPABILITY,
) -> Machine:
    """`machine` with the given parts replaced; `gpu_mem` lists one total size per GPU (of
    compute capability `capability`)."""
    if no_gpu and gpu_mem:
        raise MgenError("--no-gpu and --gpu-mem contradict each other", "pass one of them")
    changes: dict = {}
    parts = list(machine.simulated)
    if no_gpu:
        changes["gpus"] = ()
        parts.append("no GPU")  # the plan's heading reads "simulated: no GPU", not as if GPUs were simulated
    elif gpu_mem:
        changes["gpus"] = tuple(simulated_gpu(i, int(size), capability) for i, size in enumerate(gpu_mem))
        parts.append("gpus")
    if ram is not None:
        # A simulated machine runs nothing else: what it has is what is available.
        changes["ram_total_bytes"] = changes["ram_available_bytes"] = int(ram)
        changes["process_anon_bytes"] = 0
        parts.append("ram")
    if cores is not None:
        if cores < 1:
            raise MgenError(f"--cores {cores} is not a core count", "give a positive number")
        changes["logical_cores"] = changes["physical_cores"] = int(cores)
        parts.append("cores")
    return replace(machine, **changes, simulated=tuple(dict.fromkeys(parts)))


_interop_set: int | None = None


def configure_threads(num_threads: int | None, cpu_util_target: float | None) -> tuple[int, int]:
    """Set torch's intra-op and inter-op threads; both None leaves torch's defaults.

    With a target t (0..1] the intra-op count is max(1, round(t x logical cores)); an explicit
    `num_threads` wins. Inter-op threads can be set only once per process, before any parallel
    work, so later calls keep the first value. Returns the (intra, inter) now in effect.
    """
    global _interop_set
    import psutil
    import torch

    if cpu_util_target is not None and not 0 < cpu_util_target <= 1:
        raise ValidationError("cpu_util_target", f"{cpu_util_target} is outside (0, 1]", "give a fraction like 0.75")
    if num_threads is not None and num_threads < 1:
        raise ValidationError("num_threads", f"{num_threads} is not a thread count", "give 1 or more")
    intra = num_threads
    if intra is None and cpu_util_target is not None:
        intra = max(1, round(cpu_util_target * (psutil.cpu_count(logical=True) or 1)))
    if intra is None:
        return torch.get_num_threads(), torch.get_num_interop_threads()
    torch.set_num_threads(intra)
    if _interop_set is None:
        try:
            torch.set_num_interop_threads(max(1, min(intra, 4)))
            _interop_set = torch.get_num_interop_threads()
        except RuntimeError:
            # torch already started its inter-op pool; its size is fixed for this process.
            _interop_set = torch.get_num_interop_threads()
    return torch.get_num_threads(), torch.get_num_interop_threads()
