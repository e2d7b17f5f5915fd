"""MusicGen's delay pattern: codebook k runs k frames behind codebook 0.

In the delayed layout column 0 is the start token for every codebook; codebook k (channel
codebook index c, which is k for mono and k // 2 for the interleaved L/R stereo layout) holds
frame f at column c + 1 + f. Positions before a codebook starts and after it ends hold the pad
token. A sequence of L columns therefore carries L - C whole frames (C = codebooks per channel).
"""

from __future__ import annotations

import torch

PREDICT = -1  # marks a position the model fills; every other entry is forced


def channel_offsets(num_codebooks: int, audio_channels: int) -> list[int]:
    """Delay of each codebook row: stereo interleaves L/R, so rows 2c and 2c+1 share delay c."""
    return [k // audio_channels for k in range(num_codebooks)]


def pattern(prompt: torch.Tensor | None, batch: int, num_codebooks: int, audio_channels: int,
            length: int, pad: int, device=None) -> torch.LongTensor:
    """The forced tokens of a delayed sequence `[batch, K, length]`: PREDICT where the model
    chooses, the pad token in the ramps, and the prompt frames (`[batch, K, P]`, undelayed)."""
    out = torch.full((batch, num_codebooks, length), PREDICT, dtype=torch.long, device=device)
    per_channel = num_codebooks // audio_channels
    for k, c in enumerate(channel_offsets(num_codebooks, audio_channels)):
        if prompt is not None:
            out[:, k, c + 1 : c + 1 + prompt.shape[-1]] = prompt[:, k]
        out[:, k, : c + 1] = pad
        out[:, k, length - per_channel + 1 + c :] = pad
    return out


def undelay(sequence: torch.Tensor, audio_channels: int) -> torch.LongTensor:
    """Delayed `[batch, K, L]` -> aligned frames `[batch, K, L - C]`."""
    num_codebooks, length = sequence.shape[1], sequence.shape[2]
    frames = length - num_codebooks // audio_channels
    rows = [sequence[:, k, c + 1 : c + 1 + frames] for k, c in
            enumerate(channel_offsets(num_codebooks, audio_channels))]
    return torch.stack(rows, dim=1)
