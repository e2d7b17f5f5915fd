"""Candidate placements of the LM and EnCodec, what each holds on a GPU, and how fast it decodes.

The planner (`planner.py`) enumerates these layouts, evaluates each against the machine and
keeps the fastest that fits; the functions here are the arithmetic it uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from musicgen_cli.config import force_cpu_codec
from musicgen_cli.planning import estimates as K
from musicgen_cli.planning.hardware import Machine
from musicgen_cli.planning.sizing import (
    DECODER,
    JobBytes,
    ModelSizes,
    job_bytes,
    meta_layers,
)


@dataclass
class Layout:
    """One candidate placement under evaluation."""

    layer_device: list[int | str]
    main: int | str  # where the LM's embeddings and heads run
    codec_device: int | str
    codec_chunk_s: float | None
    mode: str | None
    diffusion_device: int | str | None = None  # where MultiBand Diffusion runs; None: not asked for


def gpu_budget(gpu, reserve_bytes: int | None, max_vram_bytes: int | None) -> int:
    """What the plan's tensors may take on a GPU: its free memory after the user's reserve,
    under --max-vram, less the workspace and fragmentation reserve (`workspace_share`)."""
    usable = gpu_allowance(gpu, reserve_bytes, max_vram_bytes)
    return max(0, usable - K.workspace_reserve(usable))


def gpu_allowance(gpu, reserve_bytes: int | None, max_vram_bytes: int | None) -> int:
    """VRAM mgen may take on a GPU at all: free after the reserve (and under --max-vram)."""
    reserve = K.default_reserve(gpu.total_bytes) if reserve_bytes is None else reserve_bytes
    usable = gpu.free_bytes - reserve
    if max_vram_bytes is not None:
        usable = min(usable, max_vram_bytes)
    return max(0, int(usable))


def workspace_share(gpu, reserve_bytes: int | None, max_vram_bytes: int | None) -> int:
    """The part of a GPU's allowance kept for workspaces and fragmentation, not for tensors."""
    return gpu_allowance(gpu, reserve_bytes, max_vram_bytes) - gpu_budget(gpu, reserve_bytes, max_vram_bytes)


def job_bytes_for(sizes: ModelSizes, job, dtype: str, codec_dtype: str, codec_budget: int | None = None) -> JobBytes:
    return job_bytes(
        sizes,
        duration_s=job.duration_s,
        prompt_s=job.prompt_s,
        text_tokens=job.text_tokens,
        num_samples=job.num_samples,
        guidance=job.guidance,
        window_s=job.window_s,
        dtype=dtype,
        codec_dtype=codec_dtype,
        codec_budget=codec_budget,
    )


def balanced_counts(num_layers: int, gpus, budgets, main_fixed: int, per_layer: int, overhead: int) -> dict[int, int]:
    """Layers per GPU: as even as capacities allow (in the spirit of accelerate's get_balanced_memory)."""
    if not gpus:
        return {}
    room = {g.index: budgets[g.index] - overhead - (main_fixed if i == 0 else 0) for i, g in enumerate(gpus)}
    capacity = {i: max(0, r // per_layer) for i, r in room.items()}
    if room[gpus[0].index] < 0:
        return dict.fromkeys(capacity, 0)
    counts = dict.fromkeys(capacity, 0)
    for _ in range(num_layers):
        open_gpus = [i for i in counts if counts[i] < capacity[i]]
        if not open_gpus:
            break
        counts[min(open_gpus, key=lambda i: counts[i])] += 1
    return counts


def stream_counts(counts, sizes, budgets, main, main_fixed, w, kv) -> dict[int, int] | None:
    """Counts when offloaded layers stream through the main GPU: it also holds their KV cache
    and two layers in flight (the one running and the one being copied)."""
    while True:
        offloaded = sizes.num_layers - sum(counts.values())
        need = main_fixed + gpu_overhead(kv) + counts[main] * (w + kv) + offloaded * kv + min(2, offloaded) * w
        if need <= budgets[main]:
            return counts
        if counts[main] == 0:
            return None
        counts[main] -= 1


def make_layout(counts: dict[int, int], sizes: ModelSizes, mode: str | None) -> Layout:
    devices: list[int | str] = []
    for index, n in counts.items():
        devices += [index] * n
    devices += ["cpu"] * (sizes.num_layers - len(devices))
    main = next(iter(counts)) if counts else "cpu"
    return Layout(layer_device=devices, main=main, codec_device="cpu", codec_chunk_s=None, mode=mode)


def gpu_use(layout: Layout, sizes, jb: JobBytes, lm_dtype, quantize, gpu: int) -> int:
    """Bytes a GPU holds at its peak with the LM part of `layout` (EnCodec not counted)."""
    w = sizes.layer_bytes(lm_dtype, quantize)
    on_gpu = sum(1 for d in layout.layer_device if d == gpu)
    used = on_gpu * (w + jb.kv_per_layer)
    if on_gpu or gpu == layout.main:
        used += gpu_overhead(jb.kv_per_layer)
    if gpu == layout.main:
        used += sizes.nbytes(sizes.lm_fixed_keys, lm_dtype) + jb.step_transient
        if layout.mode == "stream":
            offloaded = sum(1 for d in layout.layer_device if not isinstance(d, int))
            used += offloaded * jb.kv_per_layer + min(2, offloaded) * w
    return used


def gpu_weights(layout: Layout, sizes, lm_dtype, quantize, gpu: int) -> int:
    """The LM weights a GPU keeps between windows, when caches, step tensors and streamed
    layers' buffers are freed."""
    on_gpu = sum(1 for d in layout.layer_device if d == gpu)
    return on_gpu * sizes.layer_bytes(lm_dtype, quantize) + (sizes.nbytes(sizes.lm_fixed_keys, lm_dtype) if gpu == layout.main else 0)


def gpu_peak(layout: Layout, sizes, jb: JobBytes, lm_dtype, quantize, codec_dtype, gpu: int, codec: bool) -> int:
    """Bytes of tensors a GPU holds at its peak, EnCodec there or not (`codec`): the LM's
    decode steps with EnCodec's weights beside them, or EnCodec's decode after the last window
    (the caches are gone by then), whichever is more."""
    lm = gpu_use(layout, sizes, jb, lm_dtype, quantize, gpu) if layout.main != "cpu" else 0
    if not codec:
        return lm
    weights = sizes.nbytes(["audio_encoder"], codec_dtype)
    decode = gpu_weights(layout, sizes, lm_dtype, quantize, gpu) + weights + jb.codec_decode_vram + jb.audio_out
    return max(lm + weights, decode)


def gpu_overhead(layer_kv: int) -> int:
    """What a GPU running decoder layers holds beyond weights, caches and step tensors: the
    reference engine's cache growth, which re-allocates one layer's keys/values one position
    longer while the old ones are alive (workspaces are in the budget's reserve)."""
    return layer_kv


def place_codec(layout, sizes, job, gpus, budgets, lm_dtype, quantize, codec_dtype) -> None:
    """EnCodec on the GPU with the most room left when it fits (in chunks if need be), else CPU."""
    layout.codec_device, layout.codec_chunk_s = "cpu", None
    if not gpus or force_cpu_codec():
        return
    jb = job_bytes_for(sizes, job, lm_dtype, codec_dtype)
    spare = {g.index: budgets[g.index] - gpu_peak(layout, sizes, jb, lm_dtype, quantize, codec_dtype, g.index, codec=False)
             for g in gpus}
    index = max(spare, key=spare.get)
    for decode in (jb, job_bytes_for(sizes, job, lm_dtype, codec_dtype, codec_budget=0)):  # whole clip, else in chunks
        if gpu_peak(layout, sizes, decode, lm_dtype, quantize, codec_dtype, index, codec=True) <= budgets[index]:
            layout.codec_device, layout.codec_chunk_s = index, decode.codec_chunk_s
            return


def place_diffusion(layout, diffusion, sizes, job, budgets, lm_dtype, quantize, codec_dtype) -> None:
    """MultiBand Diffusion (planning/diffusion.py) beside EnCodec on its GPU when its weights and
    activations fit there too, else on the CPU; None when the job does not ask for it."""
    if diffusion is None:
        layout.diffusion_device = None
        return
    layout.diffusion_device = "cpu"
    index = layout.codec_device
    if not isinstance(index, int):
        return
    jb = job_bytes_for(sizes, job, lm_dtype, codec_dtype, codec_budget=0 if layout.codec_chunk_s else None)
    used = gpu_peak(layout, sizes, jb, lm_dtype, quantize, codec_dtype, index, codec=True)
    if used + diffusion.job_bytes(job, cpu=False) <= budgets[index]:
        layout.diffusion_device = index


def step_time(layout: Layout, sizes, jb: JobBytes, machine: Machine, lm_dtype, quantize) -> float:
    """Seconds per decode step from bytes read and where they are read from."""
    w = sizes.layer_bytes(lm_dtype, quantize)
    fixed = sizes.nbytes(sizes.lm_fixed_keys, lm_dtype)
    kv_mean = jb.kv_per_layer / 2  # the cache fills from empty to full over a window
    main = layout.main
    gpus = {g.index: g for g in machine.gpus}
    link = gpus.get(main)
    # Measured on this machine when probed (linkprobe); estimates for simulated GPUs.
    cpu_bw = (link and link.host_read_bytes_s) or K.cpu_bandwidth(machine.physical_cores)
    h2d = (link and link.h2d_bytes_s) or K.PINNED_H2D_BANDWIDTH
    disk = sum(1 for d in layout.layer_device if d == "disk") * w / K.DISK_BANDWIDTH
    if main == "cpu":
        n = sizes.num_layers
        return (fixed + n * (w + kv_mean)) / cpu_bw + n * K.CPU_LAYER_OVERHEAD_S + disk
    bandwidth = {g.index: g.bandwidth_bytes_s * K.GPU_BANDWIDTH_EFFICIENCY for g in machine.gpus}
    gpu_s = fixed / bandwidth[main]
    for index in bandwidth:
        n = sum(1 for d in layout.layer_device if d == index)
        gpu_s += n * ((w + kv_mean) / bandwidth[index] + K.GPU_LAYER_OVERHEAD_S)
    off = sum(1 for d in layout.layer_device if d == "cpu")
    if layout.mode == "stream":
        compute = gpu_s + off * ((w + kv_mean) / bandwidth[main] + K.GPU_LAYER_OVERHEAD_S)
        return max(compute, off * w / h2d) + disk
    return gpu_s + off * ((w + kv_mean) / cpu_bw + K.CPU_LAYER_OVERHEAD_S) + disk


def mode_times(candidates, sizes, job, machine, lm_dtype, quantize) -> tuple[float | None, float | None]:
    times: dict[str, float] = {}
    for layout in candidates:
        jb = job_bytes_for(sizes, job, lm_dtype, lm_dtype)
        times[layout.mode] = step_time(layout, sizes, jb, machine, lm_dtype, quantize)
    return times.get("stream"), times.get("cpu")


def device_map_for(layout: Layout, sizes: ModelSizes) -> dict[str, int | str]:
    main = layout.main
    device_map: dict[str, int | str] = {}
    for key in sizes.modules:
        if key == "text_encoder":
            device_map[key] = "cpu"
        elif key == "audio_encoder":
            device_map[key] = layout.codec_device
        elif key.startswith(f"{DECODER}.layers."):
            device_map[key] = layout.layer_device[int(key.rsplit(".", 1)[1])]
        else:
            device_map[key] = main
    return device_map


def accelerate_map(config, plan, sizes: ModelSizes, lm_dtype: str) -> dict[str, int | str]:
    """Let accelerate split the layers (respecting no-split classes) within the planned counts."""
    if not plan.uses_gpu:
        return plan.device_map
    import torch
    from accelerate import infer_auto_device_map

    w = sizes.layer_bytes(lm_dtype)
    layers = [plan.device_map[k] for k in sizes.layer_keys]
    max_memory: dict[int | str, int] = {}
    for device in dict.fromkeys(layers):
        max_memory[device] = layers.count(device) * w + w // 2
    # accelerate holds back the largest layer on its main devices (the first GPU and the CPU)
    # while any layer is left to place.
    for device in (next((d for d in layers if isinstance(d, int)), None), "cpu"):
        if device in max_memory:
            max_memory[device] += w
    quiet = logging.getLogger("accelerate.utils.modeling")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns that planned GPUs are absent on this machine
    try:
        split = infer_auto_device_map(
            meta_layers(config), max_memory=max_memory, no_split_module_classes=list(sizes.no_split), dtype=getattr(torch, lm_dtype)
        )
    finally:
        quiet.setLevel(level)
    device_map = dict(plan.device_map)
    for name, device in split.items():
        for i in range(sizes.num_layers):
            if name == "" or name == str(i) or str(i).startswith(f"{name}."):
                if device_map[sizes.layer_keys[i]] != "disk":
                    device_map[sizes.layer_keys[i]] = device
    if [device_map[k] for k in sizes.layer_keys] != layers:
        raise AssertionError(f"planner bug: accelerate split the layers differently: {split}")
    return device_map
