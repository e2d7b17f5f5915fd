"""The per-machine kernel probe: how fast each CPU mode multiplies a decoder layer's weights.

Each mode gets a stack of copies of one small-shaped decoder layer's linear weights (6 of
1024x1024, 1024->4096, 4096->1024) in its own format, large enough together (>= 48 MiB) to
stream from memory rather than cache, as a decode step does. The stacks are timed
interleaved, a pass of each mode per round, and each call's fastest time over the rounds is
kept, so load from other processes neither favours one mode nor sticks in the figures.
Results are cached per CPU model, feature flags, torch version and thread count
(planning/cpu_modes.py); the probe takes a few seconds once.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import psutil
import torch
import torch.nn as nn
import torch.nn.functional as F

from musicgen_cli.decode.cpu_linear import fast_linear, fastest
from musicgen_cli.decode.fastloop import attention_seconds
from musicgen_cli.engine.quantize import apply_kernel
from musicgen_cli.planning.cpu_modes import (
    CPU_MODES,
    KernelProbe,
    annotate,
    cached_probe,
    linear_params,
    machine_key,
    store_probe,
    weight_bytes_per_param,
)

HIDDEN = 1024  # small's width; its FFN is 4x
STACK_BYTES = 48 * 2**20
ROUNDS = 11
# Below this many linear weights a step costs its launches, not its bytes: no probe is worth it.
PROBE_MIN_PARAMS = 50_000_000


class _Holder(nn.Module):
    """apply_kernel works on `model.decoder`: a stand-in model whose decoder is the layer list."""

    def __init__(self, layers: nn.ModuleList):
        super().__init__()
        self.decoder = layers


def _layer(generator: torch.Generator, hidden: int) -> nn.ModuleList:
    shapes = [(hidden, hidden)] * 6 + [(hidden, 4 * hidden), (4 * hidden, hidden)]
    layers = nn.ModuleList(nn.utils.skip_init(nn.Linear, i, o, bias=False) for i, o in shapes)
    for layer in layers:
        nn.init.normal_(layer.weight, std=0.02, generator=generator)
    return layers.requires_grad_(False)


def _stack(layer: nn.ModuleList, mode: str, stack_bytes: int) -> tuple[list, int]:
    """Copies of `layer` in `mode`, each called the way the fast loop calls it (`fast_linear`)."""
    params = sum(m.weight.numel() for m in layer)
    copies = max(1, math.ceil(stack_bytes / (params * weight_bytes_per_param(mode))))
    first = copy.deepcopy(layer)
    if mode == "bfloat16":
        first.to(torch.bfloat16)
    first = apply_kernel(_Holder(first), mode).decoder
    stack = list(first)
    for _ in range(copies - 1):  # copies of the quantised layer: distinct memory, no re-quantising
        stack.extend(copy.deepcopy(first))
    return [fast_linear(module) for module in stack], copies * params


def _pass(stack: list, inputs: dict[int, torch.Tensor], best: list[float]) -> None:
    """One pass over the stack, keeping each call's fastest time so far in `best`."""
    for i, module in enumerate(stack):
        start = time.perf_counter()
        module(inputs[module.in_features])
        best[i] = min(best[i], time.perf_counter() - start)


def _bandwidth() -> float:
    # 256 MiB of distinct pages: a VM host merges identical pages (KSM), and a block of ones would
    # then be read from one cached page at several times the memory's speed
    block = torch.arange(2**26, dtype=torch.float32)
    return block.numel() * 4 / fastest(block.sum, rounds=4)


def _attention_rates(rows: int, hidden: int, positions: int = 1024, layers: int = 8) -> dict[str, float]:
    """Bytes/s SDPA reads a KV cache with one query column (the loop's long-clip cost), per cache
    format, timed as the loop decides its format (`fastloop.attention_seconds`)."""
    size = rows * (hidden // 64) * positions * 64 * 2 * layers
    return {name: size * width / attention_seconds(kind, rows, hidden // 64, positions, layers)
            for name, kind, width in (("float32", torch.float32, 4), ("bfloat16", torch.bfloat16, 2))}


def _layer_glue(rows: int, hidden: int, generator: torch.Generator, text: int = 12) -> float:
    """Seconds a decoder layer costs per step beyond its linears and its cache: the calls
    `fastloop.Decoder._layer` makes around them (three norms, a cache write and SDPA over a few
    positions, cross-attention over the text, GELU, residuals, head reshapes), issued from Python
    one column at a time. On two cores this is a quarter to a third of an int8 step (BENCHMARKS.md)."""
    heads = hidden // 64
    norm = nn.LayerNorm(hidden)
    x = torch.randn(rows, 1, hidden, generator=generator)
    ffn = torch.randn(rows, 1, 4 * hidden, generator=generator)
    cache = torch.zeros(rows, heads, 64, 64)
    keys = torch.randn(rows, heads, text, 64, generator=generator)

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(rows, 1, heads, 64).transpose(1, 2)

    def layer():
        h = norm(x)
        q = split(h)
        cache[:, :, 8:9] = split(h)
        out = F.scaled_dot_product_attention(q, cache[:, :, :9], cache[:, :, :9])
        h = x + out.transpose(1, 2).reshape(rows, 1, hidden)
        out = F.scaled_dot_product_attention(split(norm(h)), keys, keys)
        h = h + out.transpose(1, 2).reshape(rows, 1, hidden)
        return h + F.gelu(ffn)[..., :hidden] + norm(h)

    calls = 24
    return fastest(lambda: [layer() for _ in range(calls)]) / calls


@torch.inference_mode()
def measure(modes: list[str] | None = None, rows: int = 2, stack_bytes: int = STACK_BYTES,
            hidden: int = HIDDEN) -> KernelProbe:
    """Time every mode now (no cache)."""
    modes = modes or list(CPU_MODES)
    generator = torch.Generator().manual_seed(0)  # never the process-wide one: it carries the user's seed
    layer = _layer(generator, hidden)
    stacks = {mode: _stack(layer, mode, stack_bytes) for mode in modes}
    inputs = {mode: {n: torch.randn(rows, 1, n, generator=generator).to(torch.bfloat16 if mode == "bfloat16" else torch.float32)
                     for n in (hidden, 4 * hidden)} for mode in modes}
    # Each call's fastest time over the rounds: other processes only ever slow a call down (on a
    # shared machine a 2-thread call waits whenever either thread is descheduled), so the
    # minimum is the machine's own speed. A pass per mode per round: load hits all alike.
    best = {mode: [math.inf] * len(stacks[mode][0]) for mode in modes}
    for mode in modes:  # warm-up: first calls pack weights and fault pages in
        _pass(stacks[mode][0], inputs[mode], [math.inf] * len(stacks[mode][0]))
    for _ in range(ROUNDS):
        for mode in modes:
            _pass(stacks[mode][0], inputs[mode], best[mode])
    threads = torch.get_num_threads()
    attention = _attention_rates(rows, hidden)
    return KernelProbe(
        machine_key=machine_key(threads, torch.__version__),
        threads=threads,
        bandwidth_bytes_s=_bandwidth(),
        params_per_s={mode: stacks[mode][1] / sum(best[mode]) for mode in modes},
        attention_bytes_s=attention["float32"],
        attention_bf16_bytes_s=attention["bfloat16"],
        layer_glue_s=_layer_glue(rows, hidden, generator),
        load_avg=psutil.getloadavg()[0],  # os.getloadavg does not exist on Windows
        cores=os.cpu_count() or 1,
    )


def ensure_probe(cache_dir: str | Path | None = None) -> KernelProbe:
    """The cached probe for this CPU, torch and thread count; measured and cached when missing.
    A probe taken while other work held the cores is provisional: measured again on the next
    call and the faster figures kept, until one is taken on a quiet machine."""
    key = machine_key(torch.get_num_threads(), torch.__version__)
    probe = cached_probe(key, cache_dir)
    if probe is None or probe.contended:
        fresh = measure()
        probe = fresh if probe is None else probe.merged(fresh)
        store_probe(probe, cache_dir)
    return probe


def reprobe(cache_dir: str | Path | None = None) -> tuple[KernelProbe, KernelProbe | None]:
    """Measure now, on demand (`mgen probe`): (the probe kept, the one measured before it, if any).
    The new figures replace the stored ones, except that a busy machine's never replace the
    stored ones outright (a contended run only reads slower): then the faster of each are kept."""
    key = machine_key(torch.get_num_threads(), torch.__version__)
    before = cached_probe(key, cache_dir)
    probe = measure()
    if probe.contended and before is not None:
        probe = before.merged(probe)
    store_probe(probe, cache_dir)
    return probe, before


def plan_cpu_kernel(plan, config, cache_dir: str | Path | None = None) -> None:
    """A CPU plan gets its decoder kernel and, for models whose decode is bound by their weights,
    every mode's expected speed from this machine's probe (measured the first time)."""
    if plan.uses_gpu:
        return
    probe = ensure_probe(cache_dir) if linear_params(config) >= PROBE_MIN_PARAMS else None
    annotate(plan, probe, config)
