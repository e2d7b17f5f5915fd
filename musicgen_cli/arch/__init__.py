"""Facts about transformers' MusicGen architecture: the released shapes, their configs, the
model classes, the training window. The one table every other module reads.

Nothing here builds weights; `store.random_models` writes random-weight models from these configs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

Variant = Literal["mono", "stereo", "melody"]

WINDOW_SECONDS = 30.0  # what the released models were trained on: one window of generation
CONTEXT_SECONDS = 12.0  # later windows are prompted by the last 12 s: audiocraft's extend_stride=18

# Decoder shapes of the released checkpoints (hidden, layers, heads, ffn).
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (32, 2, 2, 64),
    "small": (1024, 24, 16, 4096),
    "medium": (1536, 48, 24, 6144),
    "large": (2048, 48, 32, 8192),
}
MUSICGEN_TYPES = ("musicgen", "musicgen_melody")

# t5-base, the text encoder of every released MusicGen; the tiny one matches the offline
# tokenizer that `store.random_models` writes (46 entries).
T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
T5_TINY = dict(vocab_size=46, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)

# EnCodec 32 kHz as released with MusicGen; the tiny one keeps the hop (640) and the
# sample rate so durations and frame counts behave exactly like the real codec.
ENCODEC_REAL = dict(hidden_size=128, num_filters=64, codebook_size=2048, num_lstm_layers=2)
ENCODEC_TINY = dict(hidden_size=8, num_filters=2, codebook_size=64, num_lstm_layers=1)


def shape_name(hidden: int | None, layers: int | None, heads: int | None = None, ffn: int | None = None) -> str | None:
    """The released shape with these decoder dimensions (heads/ffn checked when given)."""
    for name, (h, n, a, f) in SHAPES.items():
        if (h, n) == (hidden, layers) and heads in (None, a) and ffn in (None, f):
            return name
    return None


def is_melody(config: Any) -> bool:
    """Whether a config (object or config.json dict) is MusicGen-Melody."""
    model_type = config.get("model_type") if isinstance(config, dict) else config.model_type
    return model_type == "musicgen_melody"


def frame_rate(config: Any) -> float:
    """Codec frames per second of a MusicGen config (50 for the 32 kHz EnCodec)."""
    codec = config.audio_encoder
    hop = 1
    for ratio in codec.upsampling_ratios:
        hop *= ratio
    return codec.sampling_rate / hop


def max_window_seconds(config: Any) -> float:
    """The longest window the decoder's positions reach (one position goes to the start token)."""
    return (config.decoder.max_position_embeddings - 1) / frame_rate(config)


def decode_steps(frames: int, num_codebooks: int, audio_channels: int = 1) -> int:
    """Decoder forward passes that yield `frames` new frames. The delay pattern shifts each
    channel's codebooks by one step each (a stereo model interleaves its two channels' books),
    which adds codebooks-per-channel - 1 steps. The planner and the loop both count with this."""
    return frames + num_codebooks // audio_channels - 1


def model_class(config: Any):
    """The transformers class that loads a config (plain or melody MusicGen)."""
    if is_melody(config):
        from transformers import MusicgenMelodyForConditionalGeneration

        return MusicgenMelodyForConditionalGeneration
    from transformers import MusicgenForConditionalGeneration

    return MusicgenForConditionalGeneration


def build_config(shape: str, variant: Variant = "mono"):
    """The transformers config for a spec (MusicgenConfig or MusicgenMelodyConfig)."""
    from transformers import EncodecConfig, T5Config

    hidden, layers, heads, ffn = SHAPES[shape]
    tiny = shape == "tiny"
    t5 = T5Config(**(T5_TINY if tiny else T5_BASE))
    codec = ENCODEC_TINY if tiny else ENCODEC_REAL
    encodec = EncodecConfig(
        sampling_rate=32000,
        audio_channels=1,
        upsampling_ratios=[8, 5, 4, 4],
        target_bandwidths=[2.2],
        normalize=False,
        use_causal_conv=False,
        chunk_length_s=None,
        overlap=None,
        **codec,
    )
    stereo = variant == "stereo"
    decoder = dict(
        vocab_size=encodec.codebook_size,
        max_position_embeddings=2048,
        num_hidden_layers=layers,
        ffn_dim=ffn,
        num_attention_heads=heads,
        hidden_size=hidden,
        num_codebooks=8 if stereo else 4,
        audio_channels=2 if stereo else 1,
        pad_token_id=encodec.codebook_size,
        bos_token_id=encodec.codebook_size,
        dropout=0.0,
        activation_function="gelu",
        # Real checkpoints have peaked logits; at the default 0.02 a tiny random decoder is so flat
        # that conditioning (text, melody) barely moves it. A wider init makes tests see its effect.
        initializer_factor=0.3 if tiny else 0.02,
    )
    if variant == "melody":
        from transformers import MusicgenMelodyConfig, MusicgenMelodyDecoderConfig

        return MusicgenMelodyConfig(
            text_encoder=t5.to_dict(),
            audio_encoder=encodec.to_dict(),
            decoder=MusicgenMelodyDecoderConfig(**decoder).to_dict(),
            num_chroma=12,
            chroma_length=235,
        )
    from transformers import MusicgenConfig, MusicgenDecoderConfig

    return MusicgenConfig(
        text_encoder=t5.to_dict(),
        audio_encoder=encodec.to_dict(),
        decoder=MusicgenDecoderConfig(**decoder).to_dict(),
    )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' own notes and progress bars off for a block: mgen reports its own phases."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
