"""int8 quantisation of the MusicGen LM's linear layers (`--quantize int8`).

Decoding reads every decoder weight once per step, so the step time follows the bytes read:
int8 weights are a quarter of fp32. Two schemes, both torch's own kernels:

- "weight-only": int8 weights with one symmetric scale per output channel, activations stay
  floating point (`aten._weight_int8pack_mm`, whose vectorised CPU path takes bf16
  activations; on GPUs the weight is dequantised inside the matmul). Closest to fp32.
- "dynamic": torch's dynamic quantisation (fbgemm): int8 weights and int8 activations
  quantised per call. On AVX2 CPUs without VNNI it is 2-4x faster per layer than the
  weight-only kernel, at about 4x its numeric error (see BENCHMARKS.md). CPU only, and built
  on torch.ao.quantization, which torch has deprecated: opt-in.

torchao's int8 weight-only tensors ran ~50x slower than fp32 on our CPU build (torch 2.13,
AVX2), so it is not used.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def quantize_int8(model, scheme: str = "weight-only") -> nn.Module:
    """Replace every nn.Linear of the LM decoder (attention, FFN, LM heads) in place; the text
    encoder, the codec and the embeddings keep their precision. Returns the same model."""
    if scheme == "dynamic":
        # torch marks torch.ao.quantization deprecated but ships and runs it in 2.13; its warnings
        # would reach the user on every run, so they are silenced here and the scheme is opt-in.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.ao.quantization.quantize_dynamic(model.decoder, {nn.Linear}, dtype=torch.qint8, inplace=True)
        return model
    if scheme != "weight-only":
        raise ValueError(f"unknown int8 scheme {scheme!r}: use 'weight-only' or 'dynamic'")
    targets = [(parent, name, child) for parent in model.decoder.modules()
               for name, child in parent.named_children() if isinstance(child, nn.Linear)]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child))
    return model
