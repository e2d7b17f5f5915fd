"""Random-weight MusicGen models in the exact layout of the facebook/musicgen-* repos.

Real weights cannot be fetched everywhere (CI, air-gapped machines), so tests, benchmarks
and the `tiny-random` manifest entry use real transformers modules with random weights:
tiny configs for behaviour, shape-faithful configs for speed and memory. They make noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from musicgen_cli.arch import Variant, build_config, model_class

# Words the offline tokenizer knows; anything else maps to <unk>, which is fine for noise models.
_WORDS = (
    "a the of and with in on for to 30 second seconds grand piano jazz trio bass drums "
    "improvisation vocals lofi beat guitar synth ambient rock pop orchestra strings slow fast "
    "happy sad calm epic heart my terraform song music solo upbeat groove"
).split()

@dataclass(frozen=True)
class ModelSpec:
    """What to build: a decoder shape, a channel layout and whether the encoders are tiny."""

    shape: str = "tiny"
    variant: Variant = "mono"
    seed: int = 0
    layers: int | None = None  # a deeper decoder than the shape's (offload tests need > 2 layers)

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


def _uniform(rng, shape: tuple[int, ...], bound: float):
    """Values uniform in [-bound, bound) from PCG64's raw 64-bit words: integer shifts and exact
    float32 arithmetic only, so every numpy, torch and CPU gives the same numbers for a seed."""
    import numpy as np

    count = int(np.prod(shape, dtype=np.int64))
    words = rng.bit_generator.random_raw(count)
    unit = (words >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)  # 24 random bits: exact in float32
    return ((unit * np.float32(2.0) - np.float32(1.0)) * np.float32(bound)).reshape(shape)


def _seeded_weights(model, seed: int) -> None:
    """Every learnt tensor drawn again from numpy's PCG64 at `seed`, in name order.

    torch's own initialisers change between torch versions (and draw from its global
    generator), so a `tiny-random` built by another install would be another model. Constant
    tensors (norm scales, zero biases) keep their values; rows that start all zero (padding
    embeddings) stay zero. Weights are scaled by 1/sqrt(fan-in), as torch's default init is.
    """
    import numpy as np
    import torch

    rng = np.random.Generator(np.random.PCG64(seed))
    with torch.no_grad():
        for _name, tensor in sorted(model.named_parameters()):  # by name: an order that never changes
            flat = tensor.detach().reshape(tensor.shape[0], -1) if tensor.dim() > 1 else tensor.detach()[None]
            first = float(flat.reshape(-1)[0])
            if first in (0.0, 1.0) and bool((flat == first).all()):
                continue  # a constant: ones or zeros by design
            fan_in = flat.shape[1] if tensor.dim() > 1 else 50
            values = torch.from_numpy(_uniform(rng, tuple(tensor.shape), 3.0**0.5 / fan_in**0.5))
            if tensor.dim() > 1:
                values[(flat == 0).all(dim=1).cpu()] = 0.0
            tensor.copy_(values.to(tensor.dtype))
        # transformers starts EnCodec's codebooks at zero (k-means learns them), which would make
        # every code decode to the same sound: give them unit-variance vectors like a trained codec.
        for layer in model.audio_encoder.quantizer.layers:
            embed = layer.codebook.embed
            embed.copy_(torch.from_numpy(_uniform(rng, tuple(embed.shape), 3.0**0.5)))
            layer.codebook.embed_avg.copy_(embed)
            layer.codebook.cluster_size.fill_(1.0)


def build_model(spec: ModelSpec, dtype=None):
    """A randomly initialised model in memory (no files): the same numbers everywhere for a seed."""
    config = build_config(spec.shape, spec.variant)
    if spec.layers:
        config.decoder.num_hidden_layers = spec.layers
    model = model_class(config)(config)
    _seeded_weights(model, spec.seed)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def write_model_folder(out_dir: Path | str, spec: ModelSpec = ModelSpec(), dtype=None, device=None) -> Path:
    """Save a random model in the facebook/musicgen-* repo layout and return the folder.
    `device` builds it there (a GPU initialises released shapes in seconds); `dtype` is the
    weights' dtype in the file."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.device(device or "cpu"):
        model = build_model(spec, dtype=dtype)
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
