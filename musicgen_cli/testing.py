"""Random-weight MusicGen models in the exact layout of the facebook/musicgen-* repos.

Real weights cannot be fetched everywhere (CI, air-gapped machines), so tests, benchmarks
and the `tiny-random` manifest entry use real transformers modules with random weights:
tiny configs for behaviour, shape-faithful configs for speed and memory. They make noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Variant = Literal["mono", "stereo", "melody"]

# Words the offline tokenizer knows; anything else maps to <unk>, which is fine for noise models.
_WORDS = (
    "a the of and with in on for to 30 second seconds grand piano jazz trio bass drums "
    "improvisation vocals lofi beat guitar synth ambient rock pop orchestra strings slow fast "
    "happy sad calm epic heart my terraform song music solo upbeat groove"
).split()

# Decoder shapes of the released checkpoints (hidden, layers, heads, ffn).
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (32, 2, 2, 64),
    "small": (1024, 24, 16, 4096),
    "medium": (1536, 48, 24, 6144),
    "large": (2048, 48, 32, 8192),
}

# t5-base, the text encoder of every released MusicGen.
T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
T5_TINY = dict(vocab_size=len(_WORDS) + 3, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)

# EnCodec 32 kHz as released with MusicGen; the tiny one keeps the hop (640) and the
# sample rate so durations and frame counts behave exactly like the real codec.
ENCODEC_REAL = dict(hidden_size=128, num_filters=64, codebook_size=2048, num_lstm_layers=2)
ENCODEC_TINY = dict(hidden_size=8, num_filters=2, codebook_size=64, num_lstm_layers=1)


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a decoder shape, a channel layout and whether the encoders are tiny."""

    shape: str = "tiny"
    variant: Variant = "mono"
    seed: int = 0

    @property
    def tiny(self) -> bool:
        return self.shape == "tiny"


def build_tokenizer(out_dir: Path) -> None:
    """Write a T5-compatible tokenizer (tokenizer.json + config) built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + w, -float(i + 1)) for i, w in enumerate(_WORDS)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tok.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "T5Tokenizer",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "extra_ids": 0,
        "model_max_length": 512,
        "padding_side": "right",
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def build_config(spec: ModelSpec):
    """The transformers config for a spec (MusicgenConfig or MusicgenMelodyConfig)."""
    from transformers import EncodecConfig, T5Config

    hidden, layers, heads, ffn = SHAPES[spec.shape]
    t5 = T5Config(**(T5_TINY if spec.tiny else T5_BASE))
    codec = ENCODEC_TINY if spec.tiny else ENCODEC_REAL
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
    stereo = spec.variant == "stereo"
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
    )
    if spec.variant == "melody":
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


def model_class(config):
    """The transformers class that loads a config (plain or melody MusicGen)."""
    if config.model_type == "musicgen_melody":
        from transformers import MusicgenMelodyForConditionalGeneration

        return MusicgenMelodyForConditionalGeneration
    from transformers import MusicgenForConditionalGeneration

    return MusicgenForConditionalGeneration


def _generation_config(config) -> dict:
    pad = config.decoder.pad_token_id
    return {
        "_from_model_config": False,
        "bos_token_id": pad,
        "decoder_start_token_id": pad,
        "pad_token_id": pad,
        "do_sample": True,
        "guidance_scale": 3.0,
        "max_length": 1500,
        "top_k": 250,
    }


def _preprocessor_config(spec: ModelSpec) -> dict:
    if spec.variant == "melody":
        return {
            "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
            "processor_class": "MusicgenMelodyProcessor",
            "feature_size": 12,
            "sampling_rate": 32000,
            "hop_length": 4096,
            "chunk_length": 30,
            "n_fft": 16384,
            "num_chroma": 12,
            "padding_side": "left",
            "padding_value": 0.0,
            "return_attention_mask": True,
        }
    return {
        "feature_extractor_type": "EncodecFeatureExtractor",
        "processor_class": "MusicgenProcessor",
        "feature_size": 1,
        "sampling_rate": 32000,
        "padding_side": "left",
        "padding_value": 0.0,
        "return_attention_mask": True,
        "chunk_length_s": None,
        "overlap": None,
    }


def build_model(spec: ModelSpec, dtype=None):
    """A randomly initialised model in memory (no files)."""
    import torch

    config = build_config(spec)
    torch.manual_seed(spec.seed)
    model = model_class(config)(config)
    # transformers starts EnCodec's codebooks at zero (they are learnt by k-means), which would
    # make every code decode to the same sound: give them random vectors like a trained codec.
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            layer.codebook.cluster_size.fill_(1.0)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def write_model_folder(out_dir: Path | str, spec: ModelSpec = ModelSpec()) -> Path:
    """Save a random model in the facebook/musicgen-* repo layout and return the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(spec)
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "generation_config.json").write_text(json.dumps(_generation_config(model.config), indent=2))
    (out_dir / "preprocessor_config.json").write_text(json.dumps(_preprocessor_config(spec), indent=2))
    build_tokenizer(out_dir)
    readme = (
        f"# Random-weight MusicGen ({spec.shape}, {spec.variant})\n\n"
        "Built by mgen's test-model factory. The weights are random: it makes noise.\n"
        "It exists to check a set-up end to end without downloading a real model.\n"
    )
    (out_dir / "README.md").write_text(readme)
    return out_dir
