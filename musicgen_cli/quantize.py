"""int8 weight-only quantisation of the MusicGen LM's linear layers (`--quantize int8`).

Decoding reads every decoder weight once per step, so on a CPU the step time is set by memory
bandwidth: int8 weights read a quarter of the fp32 bytes. Weights get one symmetric scale per
output channel; activations stay in floating point.

torchao's int8 weight-only tensors run ~50x slower than fp32 on our CPU build (torch 2.13,
AVX2), so this uses torch's own packed kernel `aten._weight_int8pack_mm`, whose vectorised CPU
path takes bf16 activations (the fp32 one is scalar). Elsewhere it dequantises inside the matmul.
"""

from __future__ import annotations

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


def quantize_int8(model) -> nn.Module:
    """Replace every nn.Linear of the LM decoder (attention, FFN, LM heads) in place; the text
    encoder, the codec and the embeddings keep their precision. Returns the same model."""
    targets = [(parent, name, child) for parent in model.decoder.modules()
               for name, child in parent.named_children() if isinstance(child, nn.Linear)]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child))
    return model
