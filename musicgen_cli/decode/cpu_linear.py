"""The decoder's linear layers on a CPU as the fast loop calls them: the same arithmetic as the
modules, with less in the way.

float32 at all threads, with the reference's exact rounding. A decode step multiplies two rows
(the CFG pair) by every weight. MKL runs such a two-row GEMM on one thread, at about a third of
a core pair's read bandwidth on the Zen 4 machines we measure on (BENCHMARKS.md, "CPU decode modes"). The
same product as a batched GEMM over blocks of `BLOCK` output channels (a view of the weight, no
copy) runs on every thread, and each output is still the same dot product accumulated in the
same order, so the result is bitwise the one `F.linear` gives and the fast loop keeps
transformers' exact tokens. Whether that holds, and whether it is faster, belongs to the BLAS
build and the CPU, so both are checked once per process before the form is used (`blocked_wins`).

Dynamic int8 (fbgemm): the module's own op with its own arguments, called without the module's
Python around it (~9 us of a ~19 us call on two cores: 1.7 ms of a step).
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

BLOCK = 128  # output channels per GEMM of the batch; 64-512 measure alike, 128 fastest
_WINS: dict[int, bool] = {}  # BLOCK -> exact and faster here


class BlockedLinear:
    """`linear(x)` for a bias-free float32 CPU `nn.Linear`, as one batched GEMM over blocks of
    its output channels."""

    def __init__(self, weight: torch.Tensor):
        self.out_features, self.in_features = weight.shape
        self.blocks = weight.view(self.out_features // BLOCK, BLOCK, self.in_features).transpose(1, 2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = torch.bmm(flat.expand(self.blocks.shape[0], *flat.shape), self.blocks)
        return out.transpose(0, 1).reshape(*x.shape[:-1], self.out_features)


def blockable(module: nn.Module) -> bool:
    return (type(module) is nn.Linear and module.bias is None and module.weight.dtype == torch.float32
            and module.weight.device.type == "cpu" and module.out_features % BLOCK == 0)


class DynamicInt8Linear:
    """`module(x)` for a float32 `x` and a qint8 dynamic `torch.ao` Linear: the op and the
    arguments its `forward` uses (version >= 4: activations in 7 bits, `reduce_range`)."""

    def __init__(self, module: nn.Module):
        self.packed = module._packed_params._packed_params
        self.in_features, self.out_features = module.in_features, module.out_features

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)


def _dynamic_int8(module: nn.Module) -> bool:
    return (type(module) is DynamicLinear and module._packed_params.dtype == torch.qint8
            and module.version is not None and module.version >= 4)


def fast_linear(module: nn.Module):
    """The callable the fast loop uses for one of the decoder's linear modules on a CPU (float32
    activations): the blocked form where it applies and wins on this machine, fbgemm's op for a
    dynamic int8 module, else the module itself."""
    if blockable(module) and blocked_wins():
        return BlockedLinear(module.weight)
    if _dynamic_int8(module):
        return DynamicInt8Linear(module)
    return module


def blocked_wins() -> bool:
    """Whether the blocked form gives F.linear's exact bits here (two rows and a prefill's many,
    at the released input widths) and is faster on a weight stack beyond the caches."""
    if BLOCK not in _WINS:
        _WINS[BLOCK] = _exact() and _faster()
    return _WINS[BLOCK]


def _exact() -> bool:
    generator = torch.Generator().manual_seed(0)
    for in_features in (1024, 1536, 2048, 4096):  # the released widths (small, medium, large) and small's FFN
        weight = torch.randn(4 * BLOCK, in_features, generator=generator)
        for rows in (2, 60):
            x = torch.randn(rows, 1, in_features, generator=generator)
            if not torch.equal(F.linear(x, weight), BlockedLinear(weight)(x)):
                return False
    return True


@torch.inference_mode()
def _faster() -> bool:
    # 256 MiB, beyond the caches, of distinct pages (a VM host merges identical ones, served from cache)
    weights = [torch.arange(4 * BLOCK * 1024, dtype=torch.float32).view(4 * BLOCK, 1024) * 1e-6 for _ in range(128)]
    x = torch.full((2, 1, 1024), 0.5)  # timing needs no randomness: the user's seed stays untouched
    blocked = [BlockedLinear(weight) for weight in weights]
    return (fastest(lambda: [call(x) for call in blocked], rounds=3)
            < fastest(lambda: [F.linear(x, weight) for weight in weights], rounds=3))


def fastest(fn, rounds: int = 5) -> float:
    """The fastest of `rounds` timed calls: other work only ever slows a call down."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best

