"""Free memory of every GPU, read without creating a CUDA context in this process.

`torch.cuda.mem_get_info(i)` creates a context on GPU i (a few hundred MiB of VRAM, and RAM,
that no plan counts) and it stays for the life of the process: a probe that asked every GPU
left one context per GPU in every process, four per card under `accelerate launch
--num_processes 4`. Only the GPUs the plan places something on should get one, when the loader
puts tensors there.

NVML reads the same figure from the driver without a context: it is the library nvidia-smi
uses, installed with every NVIDIA driver (libnvidia-ml.so.1; nvml.dll on Windows), and called
here through ctypes (the pynvml wrapper would be one more dependency for four calls). Devices
are matched to torch's by UUID, since NVML numbers GPUs in PCI order and torch in
CUDA_DEVICE_ORDER / CUDA_VISIBLE_DEVICES order. Where NVML cannot be loaded (WSL without the
library, a container without it mounted), a short child process asks torch instead: its
contexts die with it.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _nvml():
    for name in ("libnvidia-ml.so.1", "nvml.dll"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def nvml_free(uuids: list[str]) -> list[int] | None:
    """Free bytes of the GPUs with these UUIDs (torch's `get_device_properties(i).uuid`), from
    the driver through NVML; None when NVML cannot answer for all of them."""
    lib = _nvml() if all(uuids) else None
    if lib is None or lib.nvmlInit_v2() != 0:
        return None
    try:
        free = []
        for uuid in uuids:
            handle = ctypes.c_void_p()
            name = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
            memory = _Memory()
            if (lib.nvmlDeviceGetHandleByUUID(name.encode(), ctypes.byref(handle)) != 0
                    or lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0):
                return None
            free.append(int(memory.free))
        return free
    finally:
        lib.nvmlShutdown()


_CHILD = "import json, torch; print(json.dumps([torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]))"


def child_free(count: int) -> list[int]:
    """Free bytes of GPUs 0..count-1 as torch sees them, read by a child process (it inherits
    CUDA_VISIBLE_DEVICES, so its indices are ours)."""
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, check=True)
    free = json.loads(done.stdout.strip().splitlines()[-1])
    if len(free) != count:
        raise RuntimeError(f"the child process saw {len(free)} GPUs, this one {count}")
    return [int(f) for f in free]


def free_bytes(uuids: list[str]) -> list[int]:
    """Free bytes of each GPU (torch's order, identified by UUID), no CUDA context created here."""
    found = nvml_free(uuids)
    return found if found is not None else child_free(len(uuids))
