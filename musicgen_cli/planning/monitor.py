"""What this process and the machine use right now: memory, CPU, GPUs, threads.

`snapshot()` is cheap (a few psutil and torch.cuda queries) so a progress display can call it
several times per second. GPU utilisation and the processes holding GPU memory come from
NVML when `nvidia-ml-py` is installed; without it they read as unknown.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import NamedTuple


class GpuReadout(NamedTuple):
    index: int
    name: str
    used_bytes: int  # by every process on the device
    total_bytes: int
    peak_allocated_bytes: int  # by this process's tensors
    utilisation: float | None  # percent, None when the driver cannot say


class GpuProcess(NamedTuple):
    gpu: int
    pid: int
    used_bytes: int | None
    name: str


@dataclass
class Readout:
    rss_bytes: int
    peak_rss_bytes: int
    ram_used_bytes: int
    ram_total_bytes: int
    cpu_percent: float
    per_core_percent: list[float]
    torch_threads: int
    torch_interop_threads: int
    gpus: list[GpuReadout] = field(default_factory=list)


def peak_rss_bytes() -> int:
    """This process's peak resident set (ru_maxrss is KiB on Linux, bytes on macOS; on Windows,
    which has no `resource`, the working set's peak)."""
    try:
        import resource
    except ImportError:
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def anon_rss_bytes() -> int:
    """Anonymous resident memory: what must fit in RAM. Shared libraries' file-backed pages are
    reclaimable and swing with the page cache (85-146 MiB for the same imports here), so the
    planner predicts this part. Falls back to the whole RSS where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return int(psutil.Process().memory_info().rss)


def snapshot(all_gpus: bool = False) -> Readout:
    """Now. GPUs this process has not used are left out unless `all_gpus`: reading one creates a
    CUDA context on it (a few hundred MiB that no plan counts), in every process that reads."""
    import psutil
    import torch

    memory = psutil.virtual_memory()
    per_core = psutil.cpu_percent(percpu=True)  # since the previous call
    rss = int(psutil.Process().memory_info().rss)
    return Readout(
        rss_bytes=rss,
        peak_rss_bytes=max(rss, peak_rss_bytes()),  # the kernel updates ru_maxrss lazily
        ram_used_bytes=int(memory.total - memory.available),
        ram_total_bytes=int(memory.total),
        cpu_percent=sum(per_core) / max(1, len(per_core)),
        per_core_percent=list(per_core),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        gpus=_gpus(all_gpus),
    )


def _gpus(all_gpus: bool) -> list[GpuReadout]:
    import torch

    if not torch.cuda.is_available():
        return []
    readouts = []
    for index in range(torch.cuda.device_count()):
        if not all_gpus and torch.cuda.memory_reserved(index) == 0:
            continue
        free, total = torch.cuda.mem_get_info(index)
        try:
            utilisation: float | None = float(torch.cuda.utilization(index))
        except Exception:  # torch raises whatever NVML raises, or ModuleNotFoundError without it
            utilisation = None
        readouts.append(
            GpuReadout(
                index=index,
                name=torch.cuda.get_device_name(index),
                used_bytes=int(total - free),
                total_bytes=int(total),
                peak_allocated_bytes=int(torch.cuda.max_memory_allocated(index)),
                utilisation=utilisation,
            )
        )
    return readouts


def gpu_processes() -> list[GpuProcess] | None:
    """Processes holding GPU memory, from NVML; None when the driver cannot be asked."""
    try:
        import pynvml
    except ImportError:
        return None
    import psutil

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    found = []
    try:
        for gpu in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                try:
                    name = psutil.Process(proc.pid).name()
                except psutil.Error:
                    name = "?"
                found.append(GpuProcess(gpu, proc.pid, proc.usedGpuMemory, name))
    finally:
        pynvml.nvmlShutdown()
    return found
