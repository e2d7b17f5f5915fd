"""Decoder layers kept in host memory behind a GPU: stream them, or compute them on the CPU.

The loader places the layers itself (`Placement`, recorded on the model): resident layers on
the GPU, the plan's RAM layers as real pinned host tensors. The plan chose how each step uses
the RAM layers, from bandwidths measured once per machine (`planning.linkprobe`):

- "stream": a side CUDA stream copies the next RAM layer into one of two GPU buffers while the
  current layer computes from the other: a step costs about max(compute, bytes / H2D bandwidth).
- "cpu": the layers compute where their weights are (a slow link: moving weights costs more
  than reading them from host memory).

Every buffer is stream-ordered: the copy stream waits for the buffers' allocation on the
compute stream, buffers are marked used by the copy stream, and `close()` waits for the last
(wrap-around) prefetch before the buffers are freed. On a CPU stand-in device (tests, the dry
run of the GPU check) the same swaps run with plain synchronous copies.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

# Projections of the text keys/values: used once per window, not per step, so never streamed.
ONCE_PER_WINDOW = ("encoder_attn.k_proj.", "encoder_attn.v_proj.")


@dataclass
class Placement:
    """Where the loader put the LM: `main` runs embeddings, heads and resident layers;
    `ram_layers` are in host memory, used the way `mode` says ("stream" or "cpu")."""

    main: torch.device
    ram_layers: list[int] = field(default_factory=list)
    mode: str | None = None
    # What the last fast-loop window did, for tests and the GPU check.
    streamed_copies: int = 0
    # RAM-layer bytes left in pageable memory because the OS refused to pin them.
    pageable_bytes: int = 0

    def device_of(self, layer: int, weights_device: torch.device) -> torch.device:
        """Where layer `layer` computes."""
        if layer in self.ram_layers:
            return self.main if self.mode == "stream" else torch.device("cpu")
        return weights_device


def placement_of(model) -> Placement | None:
    return getattr(model, "mgen_placement", None)


def _per_step_tensors(layer: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    found = []
    for module_name, module in layer.named_modules():
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if not f"{module_name}.".startswith(ONCE_PER_WINDOW):
                found.append((module, name, tensor))
    return found


def _swap(module: nn.Module, name: str, data: torch.Tensor) -> None:
    """Point `module`'s tensor `name` at `data`. A new Parameter rather than `.data = data`:
    `.data` cannot move a parameter between every pair of devices (host to the meta device the
    VRAM ledger stands in for a GPU with), and nothing keeps the old Parameter object."""
    if name in module._parameters:
        module._parameters[name] = nn.Parameter(data, requires_grad=False)
    else:
        module._buffers[name] = data


class _Streams:
    """CUDA streams and events, or their synchronous stand-ins on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.copy = torch.cuda.Stream(device) if self.cuda else None

    def event(self):
        return torch.cuda.Event() if self.cuda else None

    def current(self):
        return torch.cuda.current_stream(self.device) if self.cuda else None


class LayerStreamer:
    """Double-buffered, one-layer-ahead weight streaming for the RAM layers."""

    def __init__(self, layers: nn.ModuleList, order: list[int], device: torch.device, placement: Placement | None = None):
        self.device, self.order, self.placement = device, order, placement
        self.rank = {layer: n for n, layer in enumerate(order)}
        self.streams = _Streams(device)
        self.tensors = {}
        for i in order:
            entries = _per_step_tensors(layers[i])
            # Loaders lock RAM layers already; a caller that placed them itself gets them locked
            # here, in one exactly sized block (or left pageable where locking is refused).
            loose = [entry for entry in entries if not entry[2].is_pinned()] if self.streams.cuda else []
            views, locked = host_views([(tuple(t.shape), t.dtype) for _, _, t in loose]) if loose else ([], False)
            if locked:
                for (module, name, tensor), view in zip(loose, views):
                    view.copy_(tensor.data)
                    _swap(module, name, view)
            self.tensors[i] = [(module, name, getattr(module, name).data) for module, name, _ in entries]
        first = self.tensors[order[0]]
        # Two buffers (one computing, one filling); one when a single layer is streamed.
        self.slots = [[torch.empty_like(host, device=device) for _, _, host in first] for _ in range(min(2, len(order)))]
        self.loaded = [self.streams.event(), self.streams.event()]
        self.freed = [self.streams.event(), self.streams.event()]
        if self.streams.cuda:
            # The slots were allocated on the compute stream: the copy stream must not write
            # them before that allocation is ordered, and the allocator must not reuse them
            # while a copy into them is in flight.
            self.streams.copy.wait_stream(self.streams.current())
            for slot in self.slots:
                for tensor in slot:
                    tensor.record_stream(self.streams.copy)
        self.slot_of: dict[int, int] = {}
        self._prefetch(0, slot=0)

    def _prefetch(self, rank: int, slot: int) -> None:
        self.slot_of[rank] = slot
        pairs = zip(self.slots[slot], self.tensors[self.order[rank]])
        if self.streams.cuda:
            self.streams.copy.wait_event(self.freed[slot])
            with torch.cuda.stream(self.streams.copy):
                for target, (_, _, host) in pairs:
                    target.copy_(host, non_blocking=True)
            self.loaded[slot].record(self.streams.copy)
        else:
            for target, (_, _, host) in pairs:
                target.copy_(host)
        if self.placement is not None:
            self.placement.streamed_copies += 1

    def enter(self, layer: int) -> None:
        """Before layer `layer` runs: wait for its weights, point it at them, start the next copy."""
        rank = self.rank.get(layer)
        if rank is None:
            return
        slot = self.slot_of[rank]
        if self.streams.cuda:
            self.streams.current().wait_event(self.loaded[slot])
        for target, (module, name, _) in zip(self.slots[slot], self.tensors[layer]):
            _swap(module, name, target)
        # The next RAM layer (wrapping to the first one of the next step) goes into the other
        # buffer once the previous RAM layer has finished reading it.
        if len(self.order) > 1:
            self._prefetch((rank + 1) % len(self.order), slot=1 - slot)

    def exit(self, layer: int) -> None:
        rank = self.rank.get(layer)
        if rank is None:
            return
        for module, name, host in self.tensors[layer]:
            _swap(module, name, host)
        slot = self.slot_of[rank]
        if self.streams.cuda:
            self.freed[slot].record(self.streams.current())
        if len(self.order) == 1:  # a single buffer: refill it for the next step once free
            self._prefetch(0, slot=slot)

    def close(self) -> None:
        """Wait for the wrap-around prefetch still in flight, then let the buffers go."""
        if self.streams.cuda:
            self.streams.current().wait_stream(self.streams.copy)
        for module_tensors in self.tensors.values():
            for module, name, host in module_tensors:
                _swap(module, name, host)
        self.slots = []


def streamer_for(layers: nn.ModuleList, placement: Placement | None) -> LayerStreamer | None:
    """A streamer for the RAM layers when the plan chose to stream them; None otherwise."""
    if placement is None or placement.mode != "stream" or not placement.ram_layers:
        return None
    return LayerStreamer(layers, sorted(placement.ram_layers), placement.main, placement)


def offload_layers(model, gpu_budget_bytes: int) -> int:
    """Keep the decoder on its device up to a byte budget, last layers first to go to (pinned)
    host memory and streamed (for benchmarks and callers that place layers themselves).
    Returns the bytes of per-step weights moved off the device."""
    layers = model.decoder.model.decoder.layers
    main = model.decoder.model.decoder.embed_tokens[0].weight.device
    resident = sum(t.numel() * t.element_size() for t in model.decoder.parameters())
    moved, ram = 0, []
    for i in reversed(range(len(layers))):
        if resident <= gpu_budget_bytes:
            break
        layer = layers[i]
        size = sum(t.numel() * t.element_size() for t in layer.parameters())
        to_host(layer)
        resident -= size
        moved += sum(t.numel() * t.element_size() for _, _, t in _per_step_tensors(layer))
        ram.insert(0, i)
    model.mgen_placement = Placement(main=main, ram_layers=ram, mode="stream" if ram else None)
    return moved


def host_views(specs: list[tuple[tuple[int, ...], torch.dtype]]) -> tuple[list[torch.Tensor], bool]:
    """Empty host tensors of these shapes and dtypes, all in one block of exactly their bytes,
    page-locked when CUDA can lock it (True) or pageable where it cannot (False: no CUDA, or
    the OS refuses, as WSL does past its cap).

    torch's own pinned allocator (`pin_memory()`, `pin_memory=True`) rounds every block up to a
    power of two: a medium decoder layer in bfloat16 (72 MiB) would lock 128 MiB, a large one
    (just over 128 MiB) 256 MiB, none of it in the plan. An ordinary allocation registered with
    the driver locks exactly its own pages; it is unregistered when its memory goes."""
    widths = [dtype.itemsize for _, dtype in specs]
    sizes = [int(np.prod(shape, dtype=np.int64)) * width for (shape, _), width in zip(specs, widths)]
    offsets, end = [], 0
    for size, width in zip(sizes, widths):
        end = -(-end // width) * width  # each view starts at a multiple of its element size
        offsets.append(end)
        end += size
    array = np.empty(end, np.uint8)
    locked = torch.cuda.is_available() and end > 0 and _register(array.ctypes.data, end)
    if locked:
        # The block's storage holds the array; when the last view goes, the array goes, and the
        # pages are unlocked before numpy frees them.
        weakref.finalize(array, _unregister, array.ctypes.data)
    block = torch.from_numpy(array)
    views = [block[o : o + n].view(dtype).view(shape) for o, n, (shape, dtype) in zip(offsets, sizes, specs)]
    return views, locked


def _register(pointer: int, nbytes: int) -> bool:
    # Portable (flag 1), as torch's own staging buffers register: locked for every CUDA context.
    return int(torch.cuda.cudart().cudaHostRegister(pointer, nbytes, 1)) == 0


def _unregister(pointer: int) -> None:
    torch.cuda.cudart().cudaHostUnregister(pointer)


def to_host(module: nn.Module) -> int:
    """Move a module's tensors to host memory, in one exactly sized block page-locked when CUDA
    can lock it (fast async copies). Returns the bytes left pageable because locking was refused."""
    module.to("cpu")
    if not torch.cuda.is_available():
        return 0
    tensors = [*module.parameters(), *module.buffers()]
    views, locked = host_views([(tuple(t.shape), t.dtype) for t in tensors])
    if not locked:
        return sum(t.numel() * t.element_size() for t in tensors)
    for tensor, view in zip(tensors, views):
        view.copy_(tensor.data)
        tensor.data = view
    return 0
