"""EnCodec in and out of the MusicGen code space, mono and stereo.

Stereo models interleave codebooks: even indices are the left channel's, odd the right's,
each channel coded by the same mono EnCodec (the layout transformers uses).
"""

from __future__ import annotations

import torch

from musicgen_cli import arch


def _codec(model):
    return model.audio_encoder


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def channels_of(model) -> int:
    return model.decoder.config.audio_channels


@torch.inference_mode()
def encode(model, wave: torch.Tensor) -> torch.LongTensor:
    """[batch, channels, samples] float audio at the model's rate -> [batch, K, frames] codes."""
    codec = _codec(model)
    dtype = next(codec.parameters()).dtype
    wave = wave.to(_device(codec), dtype)

    per_channel = model.decoder.config.num_codebooks // channels_of(model)

    def one(channel: torch.Tensor) -> torch.Tensor:
        # At the model's bandwidth a small codebook yields more quantisers than the LM models;
        # the LM predicts only the first ones, so only those can prompt it.
        codes = codec.encode(channel, bandwidth=max(codec.config.target_bandwidths)).audio_codes[0]
        return codes[:, :per_channel]

    if channels_of(model) == 1:
        return one(wave.mean(dim=1, keepdim=True))
    left, right = one(wave[:, :1]), one(wave[:, 1:2])
    codes = left.new_empty(left.shape[0], 2 * left.shape[1], left.shape[2])
    codes[:, ::2], codes[:, 1::2] = left, right
    return codes


OVERLAP_S = 1.0  # context decoded on each side of a chunk and dropped: hides the seams


@torch.inference_mode()
def decode(model, codes: torch.LongTensor, chunk_s: float | None = None) -> torch.Tensor:
    """[batch, K, frames] codes -> [batch, channels, samples] float32 audio on the CPU.

    With `chunk_s` (the plan's, when a whole-clip decode would not fit) the clip is decoded in
    chunks, each with OVERLAP_S of neighbouring codes that are decoded and then cut away.
    """
    frames = codes.shape[-1]
    rate = frame_rate(model)
    if chunk_s and chunk_s * rate < frames:
        chunk, overlap = max(1, int(chunk_s * rate)), int(OVERLAP_S * rate)
        hop = round(model.config.audio_encoder.sampling_rate / rate)
        parts = []
        for start in range(0, frames, chunk):
            lo, hi = max(0, start - overlap), min(frames, start + chunk + overlap)
            audio = _decode_all(model, codes[..., lo:hi])
            parts.append(audio[..., (start - lo) * hop : (min(frames, start + chunk) - lo) * hop])
        return torch.cat(parts, dim=-1)
    return _decode_all(model, codes)


def _decode_all(model, codes: torch.LongTensor) -> torch.Tensor:
    codec = _codec(model)
    codes = codes.to(_device(codec))

    def one(part: torch.Tensor) -> torch.Tensor:
        return codec.decode(part[None], [None] * part.shape[0]).audio_values.float()

    if channels_of(model) == 1:
        audio = one(codes)
    else:
        audio = torch.cat([one(codes[:, ::2]), one(codes[:, 1::2])], dim=1)
    return audio.cpu()


def frame_rate(model) -> float:
    """Codec frames per second (50 for the 32 kHz EnCodec of MusicGen)."""
    return arch.frame_rate(model.config)
