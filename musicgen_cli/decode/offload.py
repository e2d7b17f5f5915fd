"""Decoder layers kept in host memory behind a GPU: stream them, or compute them on the CPU.

accelerate's offload hooks copy a layer's weights synchronously when it is called, so the GPU
idles during every copy. Here the weights sit in pinned memory and a side CUDA stream copies
the next offloaded layer into one of two GPU buffers while the current layer computes from
the other: a step costs about max(compute, offloaded bytes / H2D bandwidth).

When host-to-device bandwidth is below what the CPU reads from its own memory (a slow link),
moving the weights costs more than using them where they are, and those layers run on the CPU.
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch
import torch.nn as nn

# Projections of the text keys/values: used once per window, not per step, so never streamed.
ONCE_PER_WINDOW = ("encoder_attn.k_proj.", "encoder_attn.v_proj.")


def _per_step_tensors(layer: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    found = []
    for module_name, module in layer.named_modules():
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if not f"{module_name}.".startswith(ONCE_PER_WINDOW):
                found.append((module, name, tensor))
    return found


def _swap(module: nn.Module, name: str, data: torch.Tensor) -> None:
    getattr(module, name).data = data


class LayerStreamer:
    """Double-buffered, one-layer-ahead weight streaming for the offloaded layers."""

    def __init__(self, layers: nn.ModuleList, order: list[int], device: torch.device):
        self.device, self.order = device, order
        self.rank = {layer: n for n, layer in enumerate(order)}
        self.tensors = {}
        for i in order:
            entries = _per_step_tensors(layers[i])
            for module, name, tensor in entries:
                if not tensor.is_pinned():
                    _swap(module, name, tensor.pin_memory())
            self.tensors[i] = [(module, name, getattr(module, name).data) for module, name, _ in entries]
        first = self.tensors[order[0]]
        self.slots = [[torch.empty_like(host, device=device) for _, _, host in first] for _ in range(2)]
        self.copy_stream = torch.cuda.Stream(device)
        self.loaded = [torch.cuda.Event(), torch.cuda.Event()]
        self.freed = [torch.cuda.Event(), torch.cuda.Event()]
        self.slot_of: dict[int, int] = {}
        self._prefetch(0, slot=0)

    def _prefetch(self, rank: int, slot: int) -> None:
        self.slot_of[rank] = slot
        self.copy_stream.wait_event(self.freed[slot])
        with torch.cuda.stream(self.copy_stream):
            for target, (_, _, host) in zip(self.slots[slot], self.tensors[self.order[rank]]):
                target.copy_(host, non_blocking=True)
        self.loaded[slot].record(self.copy_stream)

    def enter(self, layer: int) -> None:
        """Before layer `layer` runs: wait for its weights, point it at them, start the next copy."""
        rank = self.rank.get(layer)
        if rank is None:
            return
        slot = self.slot_of[rank]
        torch.cuda.current_stream(self.device).wait_event(self.loaded[slot])
        for target, (module, name, _) in zip(self.slots[slot], self.tensors[layer]):
            _swap(module, name, target)
        # The next offloaded layer (wrapping to the first one of the next step) goes into the
        # other buffer once the previous offloaded layer has finished reading it.
        if len(self.order) > 1:
            self._prefetch((rank + 1) % len(self.order), slot=1 - slot)

    def exit(self, layer: int) -> None:
        rank = self.rank.get(layer)
        if rank is None:
            return
        for module, name, host in self.tensors[layer]:
            _swap(module, name, host)
        slot = self.slot_of[rank]
        self.freed[slot].record(torch.cuda.current_stream(self.device))
        if len(self.order) == 1:  # a single buffer: refill it for the next step once free
            self._prefetch(0, slot=slot)


@lru_cache(maxsize=None)
def measured_bandwidths(device: torch.device) -> tuple[float, float]:
    """(pinned host->device, host memory read) in bytes/s, measured once per process."""
    host = torch.ones(2**26, pin_memory=True)  # 256 MiB
    target = torch.empty_like(host, device=device)

    def best(fn) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return host.numel() * 4 / min(times)

    return best(lambda: target.copy_(host, non_blocking=True)), best(lambda: host.sum())


def streamer_for(layers: nn.ModuleList, device: torch.device) -> LayerStreamer | None:
    """A streamer for the layers whose weights are in host memory while the decoder runs on
    a GPU; None when there are none, or when the CPU reads its memory faster than the link
    moves it (those layers then compute on the CPU)."""
    if device.type != "cuda":
        return None
    order = [i for i, layer in enumerate(layers) if layer.final_layer_norm.weight.device.type == "cpu"]
    if not order:
        return None
    h2d, host_read = measured_bandwidths(device)
    return LayerStreamer(layers, order, device) if h2d >= host_read else None


def offload_layers(model, gpu_budget_bytes: int) -> int:
    """Keep the decoder on the GPU up to a byte budget, last layers first to go to pinned host
    memory (for benchmarks and for callers that plan placement themselves). Returns the bytes
    of per-step weights moved off the GPU."""
    layers = model.decoder.model.decoder.layers
    resident = sum(t.numel() * t.element_size() for t in model.decoder.parameters())
    moved = 0
    for layer in reversed(layers):
        if resident <= gpu_budget_bytes:
            break
        size = sum(t.numel() * t.element_size() for t in layer.parameters())
        layer.to("cpu")
        resident -= size
        moved += sum(t.numel() * t.element_size() for _, _, t in _per_step_tensors(layer))
    return moved
