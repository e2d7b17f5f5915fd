"""audiocraft's `MultiBandDiffusion` on mgen's implementation (engine/mbd.py).

    from musicgen_cli.compat.audiocraft import MusicGen, MultiBandDiffusion
    model = MusicGen.get_pretrained("facebook/musicgen-small")
    mbd = MultiBandDiffusion.get_mbd_musicgen()
    wav, tokens = model.generate(["happy rock"], return_tokens=True)
    wav_diffusion = mbd.tokens_to_wav(tokens)

Methods and defaults follow audiocraft's models/multibanddiffusion.py; noise comes from torch's
global generator, so `torch.manual_seed` repeats a run. `tokens_to_wav` equalises over the whole
batch, as audiocraft does; stereo tokens (two channels' codebooks interleaved) are decoded one
channel at a time, as audiocraft users split them by hand.
"""

from __future__ import annotations

import torch

from musicgen_cli.engine import mbd
from musicgen_cli.errors import MgenError

_CODEC_MODEL = "facebook/musicgen-small"  # audiocraft takes the 32 kHz EnCodec from this model


class MultiBandDiffusion:
    """Band-wise diffusion models (`DPs`, engine.mbd.Band) over an EnCodec (`codec_model`,
    transformers' EncodecModel)."""

    def __init__(self, DPs: list[mbd.Band], codec_model, sample_rate: int | None = None) -> None:
        if not DPs:
            raise ValueError("MultiBandDiffusion needs at least one diffusion model")
        self.DPs = DPs
        self.codec_model = codec_model
        self._checkpoint = mbd.Checkpoint(sample_rate or int(codec_model.config.sampling_rate), list(DPs), fingerprint="")
        self.device = next(codec_model.parameters()).device

    @property
    def sample_rate(self) -> int:
        return int(self.codec_model.config.sampling_rate)

    @staticmethod
    def get_mbd_musicgen(device=None, *, model: str = _CODEC_MODEL) -> MultiBandDiffusion:
        """The released MusicGen MBD (downloaded like `mgen download mbd`) over the EnCodec of
        `model` (audiocraft: musicgen-small's). A random-weight model (tiny-random...)
        gets the random-weight MBD, built on first use."""
        from musicgen_cli.engine.musicgen import load_model, resolve_model
        from musicgen_cli.planning.hardware import probe, simulate

        device = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        if device != "cpu" and not device.startswith("cuda"):
            raise MgenError(f"unknown device {device!r}", "use device='cuda', 'cpu' or None")
        resolved = resolve_model(model)
        path = mbd.checkpoint_path(resolved.entry, resolved.folder)
        engine = load_model(resolved, machine=simulate(probe(), no_gpu=device == "cpu"))
        codec = engine.model.audio_encoder.float().to(device)
        checkpoint = mbd.load_checkpoint(path)
        mbd.check_codec(checkpoint, codec)
        checkpoint.to(device)
        return MultiBandDiffusion(checkpoint.bands, codec, checkpoint.sample_rate)

    @torch.no_grad()
    def get_condition(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """EnCodec's latent of a waveform [B, C, T]."""
        import julius

        if sample_rate != self.sample_rate:
            wav = julius.resample_frac(wav, sample_rate, self.sample_rate)
        codes = self.codec_model.encode(wav.to(self.device), bandwidth=max(self.codec_model.config.target_bandwidths)).audio_codes[0]
        return self.get_emb(codes)

    @torch.no_grad()
    def get_emb(self, codes: torch.Tensor) -> torch.Tensor:
        """EnCodec's latent [B, D, frames] of codes [B, K, frames]."""
        return mbd.latent(self.codec_model, codes.to(self.device))

    def generate(self, emb: torch.Tensor, size: torch.Size | None = None,
                 step_list: list[int] | None = None) -> torch.Tensor:
        """Audio of `size` (default: one channel, the codec's hop per latent frame) from the latent."""
        if size is None:
            size = torch.Size([emb.size(0), 1, emb.size(-1) * int(self.codec_model.config.hop_length)])
        if size[0] != emb.size(0):
            raise ValueError(f"size {tuple(size)} does not have the latent's batch of {emb.size(0)}")
        checkpoint = self._checkpoint
        if step_list is not None:
            checkpoint = mbd.Checkpoint(checkpoint.sample_rate, [mbd.Band(b.unet, _with_steps(b.schedule, step_list), b.processor, b.cfg)
                                                                for b in checkpoint.bands], "")
        return mbd.diffuse(checkpoint, emb.to(self.device), torch.Size(size), mbd.noise_source(None))

    def re_eq(self, wav: torch.Tensor, ref: torch.Tensor, n_bands: int = 32, strictness: float = 1) -> torch.Tensor:
        """`wav` with each of `n_bands` mel bands matched in spread to `ref`'s."""
        return mbd.equalise(wav, ref, self.sample_rate, n_bands, strictness)

    def regenerate(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """`wav` through EnCodec's encoder and the diffusion decoder, at `sample_rate` again."""
        import julius

        if sample_rate != self.sample_rate:
            wav = julius.resample_frac(wav, sample_rate, self.sample_rate)
        emb = self.get_condition(wav, sample_rate=self.sample_rate)
        out = self.generate(emb, size=wav.size())
        if sample_rate != self.sample_rate:
            out = julius.resample_frac(out, self.sample_rate, sample_rate)
        return out

    def tokens_to_wav(self, tokens: torch.Tensor, n_bands: int = 32) -> torch.Tensor:
        """Audio [B, C, T] by diffusion from codes [B, K, frames], equalised to EnCodec's decoding."""
        if tokens.dim() != 3:
            raise ValueError("tokens should be [B, K, frames]")
        if tokens.shape[1] > self.codec_model.config.num_quantizers:  # more codebooks than one channel has: stereo
            if tokens.shape[1] % 2:
                raise ValueError(f"{tokens.shape[1]} codebooks: neither one channel's nor two interleaved")
            return torch.cat([self.tokens_to_wav(tokens[:, c::2], n_bands) for c in range(2)], dim=1)
        with torch.no_grad():
            reference = self.codec_model.decode(tokens[None].to(self.device), [None]).audio_values
            wav = self.generate(self.get_emb(tokens), size=reference.size())
            return self.re_eq(wav, reference, n_bands)


def _with_steps(schedule: mbd.Schedule, steps: list[int]) -> mbd.Schedule:
    from dataclasses import replace

    return replace(schedule, steps=tuple(int(s) for s in steps))
