"""Chroma features for melody-conditioned models, without torchaudio.

transformers' MusicgenMelodyFeatureExtractor needs torchaudio (which pins its own torch);
this computes the same one-hot dominant-pitch-class chroma with torch.stft. Only the argmax
per frame survives, so the spectrogram's overall scale is irrelevant.
"""

from __future__ import annotations

import numpy as np
import torch

from musicgen_cli.arch import WINDOW_SECONDS

N_FFT = 16384
HOP = 4096
NUM_CHROMA = 12


def chroma(wave: np.ndarray, rate: int, max_seconds: float = WINDOW_SECONDS) -> torch.Tensor:
    """[batch or channels, samples] audio at the model rate -> [1, frames, 12] one-hot chroma.

    Channels are averaged (the melody is taken from the mix) and the clip is cut to the
    model's conditioning window (the training window).
    """
    from transformers.audio_utils import chroma_filter_bank

    mono = torch.from_numpy(np.asarray(wave, dtype=np.float32)).reshape(-1, wave.shape[-1]).mean(0)
    mono = mono[: int(max_seconds * rate)]
    if mono.numel() < N_FFT:
        pad = N_FFT - mono.numel()
        mono = torch.nn.functional.pad(mono, (pad // 2, pad - pad // 2))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(mono, N_FFT, HOP, window=window, center=True, return_complex=True).abs().pow(2)
    filters = torch.from_numpy(chroma_filter_bank(num_frequency_bins=N_FFT, num_chroma=NUM_CHROMA, sampling_rate=rate, tuning=0)).float()
    raw = filters @ spec  # [12, frames]
    onehot = torch.zeros_like(raw.T)
    onehot.scatter_(1, raw.T.argmax(dim=1, keepdim=True), 1.0)
    return onehot[None]


def null_chroma(frames: int) -> torch.Tensor:
    """The 'no melody' condition (pitch class 0 in every frame), as the model's CFG half uses."""
    null = torch.zeros((1, frames, NUM_CHROMA))
    null[:, :, 0] = 1
    return null


def tile_to(features: torch.Tensor, frames: int) -> torch.Tensor:
    """Repeat (or cut) chroma to `frames`, as the model does with a short melody."""
    if features.shape[1] < frames:
        features = features.repeat(1, -(-frames // features.shape[1]), 1)
    return features[:, :frames]


def melody_batch(waves: list[np.ndarray | None], rate: int, frames: int, start_s: float | None = None,
                 window_s: float = 30.0) -> torch.Tensor:
    """[batch, frames, 12] chroma, one row per wave (None: no melody).

    With `start_s` (windows of a long clip) each melody is read from that time on, looping
    when it runs out, for `window_s` seconds: audiocraft's rule for extending past one window.
    """
    rows = []
    for wave in waves:
        if wave is None:
            rows.append(null_chroma(frames))
            continue
        if start_s is not None:
            first, length = int(start_s * rate), wave.shape[-1]
            wave = wave[..., (first + np.arange(int(window_s * rate))) % length]
        rows.append(tile_to(chroma(wave, rate, window_s), frames))
    return torch.cat(rows)
