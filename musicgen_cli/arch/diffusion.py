"""MultiBand Diffusion's architecture: the 1-D diffusion U-Net, in the parameter layout of
audiocraft's released checkpoints (so `load_state_dict` takes their `model_state` as it is), and
the released checkpoint's layout (its bands' configs), which the planner sizes and engine/mbd.py
builds random checkpoints of.

Shape of the network: `depth` strided-conv encoder levels (GroupNorm, ReLU, dilated residual
blocks), each adding a learnt embedding of the diffusion step; EnCodec's latent, projected by a
1x1 conv and stretched (nearest) to the bottleneck's length, is added at the bottom; the
bottleneck is a post-norm transformer (or a BiLSTM, or nothing); transposed-conv decoder levels
climb back with the encoders' outputs added as skips. It predicts the noise in its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The bottleneck transformer's fixed sizes (audiocraft builds it with these, not from the config).
TRANSFORMER_HEADS = 8
TRANSFORMER_LAYERS = 6
TRANSFORMER_FF = 2048
MAX_PERIOD = 10_000  # of the sinusoidal positions added before the transformer


class ResidualBlock(nn.Module):
    """x + two (GroupNorm, ReLU, dilated conv) layers; the length is kept."""

    def __init__(self, channels: int, groups: int, dilation: int, kernel: int = 3):
        super().__init__()
        padding = dilation * (kernel - 1) // 2
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=padding, dilation=dilation)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=padding, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(h)))


def _residual_stack(channels: int, groups: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(channels, groups, dilation=2**i) for i in range(count)))


class DownLevel(nn.Module):
    """Zero-pads the input to a multiple of the stride, then a strided conv and residual blocks."""

    def __init__(self, chin: int, chout: int, kernel: int, stride: int, groups: int, res_blocks: int):
        super().__init__()
        self.conv = nn.Conv1d(chin, chout, kernel, stride, (kernel - stride) // 2, bias=False)
        self.norm = nn.GroupNorm(groups, chout)
        self.res_blocks = _residual_stack(chout, groups, res_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.conv.stride[0]
        x = F.pad(x, (0, -x.shape[-1] % stride))
        return self.res_blocks(F.relu(self.norm(self.conv(x))))


class UpLevel(nn.Module):
    """Residual blocks, GroupNorm, ReLU, then a transposed conv that multiplies the length by the stride."""

    def __init__(self, chin: int, chout: int, kernel: int, stride: int, groups: int, res_blocks: int):
        super().__init__()
        self.res_blocks = _residual_stack(chin, groups, res_blocks)
        self.norm = nn.GroupNorm(groups, chin)
        self.convtr = nn.ConvTranspose1d(chin, chout, kernel, stride, (kernel - stride) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convtr(F.relu(self.norm(self.res_blocks(x))))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one packed q/k/v projection and no biases."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.out_proj = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class TransformerLayer(nn.Module):
    """Post-norm encoder layer: x = norm1(x + attn(x)); x = norm2(x + ff(x)), ReLU feed-forward."""

    def __init__(self, dim: int, heads: int, ff: int):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads)
        self.linear1 = nn.Linear(dim, ff, bias=False)
        self.linear2 = nn.Linear(ff, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[1, length, dim]: cosines in the first half, sines in the second, periods up to MAX_PERIOD."""
    half = dim // 2
    position = torch.arange(length, device=device, dtype=dtype).view(1, -1, 1)
    scale = torch.full([], float(MAX_PERIOD), device=device, dtype=dtype) ** (
        torch.arange(half, device=device, dtype=dtype).view(1, 1, -1) / (half - 1)
    )
    phase = position / scale
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


class Transformer(nn.Module):
    def __init__(self, dim: int, heads: int = TRANSFORMER_HEADS, layers: int = TRANSFORMER_LAYERS, ff: int = TRANSFORMER_FF):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, ff) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        for layer in self.layers:
            x = layer(x)
        return x


class BiLSTM(nn.Module):
    def __init__(self, dim: int, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        out = self.linear(self.lstm(x.permute(2, 0, 1))[0])
        return out.permute(1, 2, 0)


class DiffusionUNet(nn.Module):
    """Noise prediction for one band; `forward(noisy [B, C, T], step, condition [B, codec_dim, frames])`.

    Keyword arguments are the checkpoint config's `diffusion_unet` block.
    """

    def __init__(self, chin: int = 1, num_steps: int = 1000, *, hidden: int = 48, depth: int = 4, growth: float = 4.0,
                 max_channels: int = 10_000, kernel: int = 8, stride: int = 4, norm_groups: int = 4,
                 res_blocks: int = 1, emb_all_layers: bool = False, bilstm: bool = False, transformer: bool = False,
                 codec_dim: int | None = None, transformer_ff: int = TRANSFORMER_FF, transformer_layers: int = TRANSFORMER_LAYERS,
                 **ignored):
        super().__init__()
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.embedding = nn.Embedding(num_steps, hidden)
        self.embeddings = nn.ModuleList() if emb_all_layers else None
        for level in range(depth):
            self.encoders.append(DownLevel(chin, hidden, kernel, stride, norm_groups, res_blocks))
            # the deepest level is decoded first, so decoders run in list order
            self.decoders.insert(0, UpLevel(hidden, chin, kernel, stride, norm_groups, res_blocks))
            if self.embeddings is not None and level > 0:
                self.embeddings.append(nn.Embedding(num_steps, hidden))
            chin, hidden = hidden, min(int(hidden * growth), max_channels)
        self.bilstm = BiLSTM(chin) if bilstm else None
        self.transformer = Transformer(chin, ff=transformer_ff, layers=transformer_layers) if transformer else None
        self.conv_codec = nn.Conv1d(codec_dim, chin, 1) if codec_dim is not None else None

    def forward(self, x: torch.Tensor, step: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        steps = torch.full((x.shape[0],), int(step), dtype=torch.long, device=x.device)
        skips = []
        z = x
        for level, encoder in enumerate(self.encoders):
            z = encoder(z)
            table = self.embedding if level == 0 else (self.embeddings[level - 1] if self.embeddings is not None else None)
            if table is not None:
                z = z + table(steps)[:, :, None]
            skips.append(z)
        if self.conv_codec is not None:
            if condition is None:
                raise ValueError("this diffusion model needs a condition (EnCodec's latent)")
            cond = self.conv_codec(condition)
            if cond.shape[-1] > 2 * z.shape[-1]:
                raise ValueError(f"condition of {cond.shape[-1]} frames is too long for a {z.shape[-1]}-frame bottleneck")
            z = z + F.interpolate(cond, size=z.shape[-1])
            # audiocraft adds the condition in place, so the deepest skip carries it too, and
            # the released weights were trained that way
            skips[-1] = z
        if self.transformer is not None:
            z = self.transformer(z.transpose(1, 2)).transpose(1, 2)
        elif self.bilstm is not None:
            z = self.bilstm(z)
        else:
            z = torch.zeros_like(z)  # no bottleneck: only the skips carry information
        for decoder in self.decoders:
            skip = skips.pop()
            z = decoder(z[..., : skip.shape[-1]] + skip)
        return z[..., : x.shape[-1]]


_ATTENTION_WRAPPER = ".self_attn.mha."  # audiocraft's attention keeps torch's MultiheadAttention under `mha`


def from_checkpoint_keys(state: dict) -> dict:
    """audiocraft's `model_state` keys -> this module's (both spellings of the attention keys load)."""
    return {k.replace(_ATTENTION_WRAPPER, ".self_attn."): v for k, v in state.items()}


def to_checkpoint_keys(state: dict) -> dict:
    """This module's state dict in audiocraft's spelling, as its released files hold it."""
    return {k.replace(".self_attn.", _ATTENTION_WRAPPER): v for k, v in state.items()}


def bottleneck_sizes(state: dict) -> dict:
    """The transformer's feed-forward width and layer count, read from a checkpoint's keys."""
    ff = next((v.shape[0] for k, v in state.items() if k.endswith("layers.0.linear1.weight")), TRANSFORMER_FF)
    indices = {int(k.split(".")[2]) for k in state if k.startswith("transformer.layers.")}
    return {"transformer_ff": int(ff), "transformer_layers": (max(indices) + 1) if indices else TRANSFORMER_LAYERS}


# -- the released MusicGen checkpoint's layout ------------------------------------------------

EQ_BANDS = 32  # mel bands in which the result's spread is matched to EnCodec's decoding
DEFAULT_STEPS = tuple(range(999, -1, -50)) + (0,)  # 999, 949, ..., 49, then 0: 20 U-Net passes


def band_configs(sample_rate: int = 32000, unet: dict | None = None) -> list[dict]:
    """The config block of each band of the released MusicGen MBD (four bands, 32 kHz).

    audiocraft's published training configs (solver/diffusion/default.yaml, model/score/basic.yaml
    and the grid diffusion/4_bands_base_32khz.py) with EnCodec's 128-wide latent as condition.
    """
    base_unet = {
        "hidden": 48, "depth": 4, "res_blocks": 1, "norm_groups": 4, "kernel": 8, "stride": 4, "growth": 4,
        "max_channels": 10_000, "dropout": 0.0, "emb_all_layers": True, "bilstm": False, "codec_dim": 128,
        "transformer": False, "cross_attention": False,
    }
    schedule = {"repartition": "power", "variable_step_batch": True, "beta_t0": 1.0e-5, "beta_t1": 2.9e-2,
                "beta_exp": 7.5, "num_steps": 1000, "variance": "beta", "clip": 5.0, "rescale": 1.0,
                "n_bands": None, "noise_scale": 1.0}
    processors = [(False, 0.4), (False, 0.4), (True, 0.4), (True, 0.75)]  # (use, power_std) of bands 0..3
    return [
        {
            "sample_rate": sample_rate, "channels": 1, "n_q": 4,
            "diffusion_unet": {**base_unet, **(unet or {})},
            "schedule": dict(schedule),
            "processor": {"name": "multi_band_processor", "use": use, "n_bands": 8, "num_samples": 10_000, "power_std": power},
            "filter": {"use": True, "n_bands": 4, "idx_band": index, "cutoffs": None},
        }
        for index, (use, power) in enumerate(processors)
    ]


# The set-up check's MBD: the released layout at a width a CPU runs in seconds, on a latent as
# wide as the tiny codec's.
TINY_UNET = {"hidden": 8, "growth": 2, "codec_dim": 8}
