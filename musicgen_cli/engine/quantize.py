"""Reduced-precision kernels for the MusicGen LM's linear layers (`--quantize int8|int4`).

Decoding reads every decoder weight once per step, so the step time follows the bytes read,
as long as the kernel keeps up with memory. Which kernel does depends on the CPU, so the
scheme behind `--quantize int8` is picked per machine by a measured probe (`cpu_probe.py`).
All of them are torch's own kernels:

- "int8-weight-only": int8 weights, one symmetric scale per output channel, activations stay
  floating point (`aten._weight_int8pack_mm`, whose vectorised CPU path takes bf16
  activations; on GPUs the weight is dequantised inside the matmul). Closest to fp32.
- "int8-dynamic": torch's dynamic quantisation (fbgemm): int8 weights and int8 activations
  quantised per call. Built on the deprecated torch.ao.quantization; CPU only.
- "int4-weight-only": 4-bit weights in groups of 32 input channels with a bf16 scale and
  offset per group (`aten._weight_int4pack_mm_for_cpu`, bf16 activations). CPU only.

Their quality against fp32 (share of equal tokens, log-spectral distance of the audio) is
measured by benchmarks/bench_decode.py and gated in planning/cpu_modes.py.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from musicgen_cli.planning.cpu_modes import INT4_GROUP


class Int8Linear(nn.Module):
    """A bias-free or biased Linear whose weight is int8 with per-output-channel scales."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = linear.weight.dtype
        self.register_buffer("weight", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(torch.bfloat16 if linear.weight.is_cpu else linear.weight.dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cpu:
            flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
            out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
            out = out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        else:
            out = F.linear(x, self.weight.to(x.dtype)) * self.scales.to(x.dtype)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int4Linear(nn.Module):
    """A Linear whose weight is 4-bit, asymmetric per group of `INT4_GROUP` input channels:
    w = q * scale + low with q in 0..15, stored as torch's CPU int4 pack (tinygemm's layout:
    (q - 8) * scale + zero, so zero = low + 8 * scale)."""

    def __init__(self, linear: nn.Linear, group: int = INT4_GROUP):
        super().__init__()
        weight = linear.weight.detach().float()
        rows, cols = weight.shape
        grouped = weight.reshape(rows, cols // group, group)
        low, high = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-12)
        q = ((grouped - low) / scale).round().clamp(0, 15).to(torch.int32).reshape(rows, cols)
        zero = low + 8 * scale
        self.in_features, self.out_features, self.group = cols, rows, group
        self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        # [groups, out_features, 2] as the kernel wants it
        pairs = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous()
        self.register_buffer("scales_and_zeros", pairs.to(torch.bfloat16))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    @staticmethod
    def supports(linear: nn.Linear, group: int = INT4_GROUP) -> bool:
        return linear.weight.is_cpu and linear.in_features % group == 0 and linear.out_features % 8 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.weight, self.group, self.scales_and_zeros)
        out = out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias

    def dequantized(self) -> torch.Tensor:
        """The weight this layer multiplies by, `[out, in]` (through the kernel itself)."""
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.weight, self.group, self.scales_and_zeros)
        return out.float().t()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 groups of {self.group}"


def _linears(model) -> list[tuple[nn.Module, str, nn.Linear]]:
    return [(parent, name, child) for parent in model.decoder.modules()
            for name, child in parent.named_children() if isinstance(child, nn.Linear)]


def quantize_int8(model, scheme: str = "weight-only") -> nn.Module:
    """Replace every nn.Linear of the LM decoder (attention, FFN, LM heads) in place; the text
    encoder, the codec and the embeddings keep their precision. Returns the same model."""
    if scheme == "dynamic":
        # torch marks torch.ao.quantization deprecated but ships and runs it in 2.13; its warnings
        # would reach the user on every run, so they are silenced here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.ao.quantization.quantize_dynamic(model.decoder, {nn.Linear}, dtype=torch.qint8, inplace=True)
        return model
    if scheme != "weight-only":
        raise ValueError(f"unknown int8 scheme {scheme!r}: use 'weight-only' or 'dynamic'")
    for parent, name, child in _linears(model):
        setattr(parent, name, Int8Linear(child))
    return model


def quantize_int4(model) -> nn.Module:
    """4-bit weight-only decoder (CPU); a layer whose shape the kernel cannot take gets int8."""
    for parent, name, child in _linears(model):
        setattr(parent, name, Int4Linear(child) if Int4Linear.supports(child) else Int8Linear(child))
    return model


KERNELS = {
    "int8-weight-only": lambda model: quantize_int8(model, "weight-only"),
    "int8-dynamic": lambda model: quantize_int8(model, "dynamic"),
    "int4-weight-only": quantize_int4,
}


def apply_kernel(model, kernel: str) -> nn.Module:
    """Quantise the decoder for one of `KERNELS` ("float32"/"bfloat16" leave it as loaded)."""
    if kernel in ("float32", "bfloat16"):
        return model
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}: use one of {', '.join(KERNELS)}")
    return KERNELS[kernel](model)
