"""How many bytes each part of a MusicGen model and each job needs, without reading weights.

Component sizes come from building the model on the meta device (accelerate's
`init_empty_weights`) from its config, so a model that is not downloaded can be sized from
config.json alone. Job sizes (KV cache, logits, activations, EnCodec decode) follow from the
config's shapes, the clip length and the batch.

Building a config and a meta model imports torch and transformers (seconds), which a plan alone
does not need: `planning_config` keeps each source's config and sizes in the cache folder, so a
model planned once is planned again without either import.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from musicgen_cli import arch
from musicgen_cli.arch import is_melody
from musicgen_cli.planning import estimates as K
from musicgen_cli.planning.cpu_modes import INT4_GROUP

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
DECODER = "decoder.model.decoder"


@dataclass(frozen=True)
class ModuleSize:
    """One device-map entry: floating parameters, the int8-quantisable share, buffers."""

    params: int
    linear_params: int
    buffer_bytes: int

    def nbytes(self, dtype: str, quantize: str | None = None) -> int:
        width = DTYPE_BYTES[dtype]
        if quantize in ("int8", "int4"):
            # int8: one byte a weight plus a float scale per output row; int4: half a byte plus a
            # bf16 scale and offset per group of 32. The rest counts at full width.
            per = 1.0 if quantize == "int8" else 0.5 + 4 / INT4_GROUP
            return int(self.linear_params * per) + (self.params - self.linear_params) * width + self.buffer_bytes
        return self.params * width + self.buffer_bytes


@dataclass(frozen=True)
class ModelSizes:
    """Per-module sizes keyed by device-map name (execution order) and the shapes jobs need."""

    modules: dict[str, ModuleSize]
    model_type: str
    hidden: int
    num_layers: int
    heads: int
    ffn: int
    num_codebooks: int
    vocab: int
    audio_channels: int
    cross_attention: bool
    frame_rate: float
    sample_rate: int
    max_positions: int
    prefix_frames: int  # melody: chroma frames prepended to the decoder input
    codec_filters: int
    no_split: tuple[str, ...]

    @property
    def layer_keys(self) -> list[str]:
        return [f"{DECODER}.layers.{i}" for i in range(self.num_layers)]

    @property
    def lm_fixed_keys(self) -> list[str]:
        """LM modules that live on the LM's main device (everything but the layers)."""
        skip = {"text_encoder", "audio_encoder", *self.layer_keys}
        return [key for key in self.modules if key not in skip]

    def nbytes(self, keys, dtype: str, quantize: str | None = None) -> int:
        return sum(self.modules[k].nbytes(dtype, quantize if k.startswith(f"{DECODER}.layers.") else None) for k in keys)

    def layer_bytes(self, dtype: str, quantize: str | None = None) -> int:
        return self.nbytes(self.layer_keys[:1], dtype, quantize)


def _module_size(module) -> ModuleSize:
    import torch

    params = sum(p.numel() for p in module.parameters() if p.is_floating_point())
    linear = sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))
    buffers = sum(b.numel() * b.element_size() for b in module.buffers())
    return ModuleSize(params=params, linear_params=linear, buffer_bytes=buffers)


def device_map_modules(model) -> dict[str, object]:
    """The modules a device map places, by name, in the order they run."""
    decoder = model.decoder.model.decoder
    named = {"text_encoder": model.text_encoder}
    for name in ("enc_to_dec_proj", "audio_enc_to_dec_proj"):
        if hasattr(model, name):
            named[name] = getattr(model, name)
    named[f"{DECODER}.embed_tokens"] = decoder.embed_tokens
    named[f"{DECODER}.embed_positions"] = decoder.embed_positions
    for i, layer in enumerate(decoder.layers):
        named[f"{DECODER}.layers.{i}"] = layer
    named[f"{DECODER}.layer_norm"] = decoder.layer_norm
    named["decoder.lm_heads"] = model.decoder.lm_heads
    named["audio_encoder"] = model.audio_encoder
    return named


def meta_model(config):
    """The full model with every parameter on the meta device: shapes, no memory."""
    from accelerate import init_empty_weights
    from transformers.initialization import no_init_weights
    from transformers.utils import logging

    from musicgen_cli.arch import model_class

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # random-model configs trip harmless token-id warnings
    try:
        # Building sets attributes on the config: keep the caller's (and the cache key) intact.
        with init_empty_weights(), no_init_weights():
            model = model_class(config)(copy.deepcopy(config))
        # from_pretrained ties T5's token embedding to its encoder's; untied, the meta model
        # would count that 24.7M-parameter table twice.
        model.tie_weights()
        return model
    finally:
        logging.set_verbosity(verbosity)


_MEASURED: dict[str, tuple[ModelSizes, object]] = {}


def _measured(config) -> tuple[ModelSizes, object]:
    key = config.to_json_string(use_diff=False)
    if key not in _MEASURED:
        model = meta_model(config)
        _MEASURED[key] = (_measure(config, model), model)
    return _MEASURED[key]


def model_sizes(config) -> ModelSizes:
    """Sizes for a MusicgenConfig / MusicgenMelodyConfig (measured once per distinct config)."""
    if isinstance(config, ConfigView):
        return config.sizes
    return _measured(config)[0]


def meta_layers(config):
    """The decoder's layer list on the meta device, for accelerate's device-map inference."""
    return _measured(real_config(config))[1].decoder.model.decoder.layers


# --- planning without transformers ----------------------------------------------------------

SIZES_FILE = "model-sizes.json"
# Part of the cache key, raised whenever ModelSizes or its measuring changes.
SIZES_VERSION = 1


class ConfigView(SimpleNamespace):
    """A stored config as attributes (`view.decoder.hidden_size`, like a transformers config)
    with its measured sizes: what a plan reads, without importing transformers."""

    def __init__(self, data: dict, sizes: ModelSizes):
        subconfigs = {k: SimpleNamespace(**v) for k, v in data.items() if isinstance(v, dict)}
        super().__init__(**{**data, **subconfigs})
        self.data, self.sizes = data, sizes


def real_config(config):
    """A transformers config for a view (or the config itself): for work that builds modules."""
    if not isinstance(config, ConfigView):
        return config
    from transformers import AutoConfig

    data = dict(config.data)
    return AutoConfig.for_model(data.pop("model_type"), **data)


def planning_config(source: str, build: Callable[[], Any], cache_dir: str | Path | None = None):
    """The config of `source` (a stable name for what `build` returns) to plan with: the stored
    view when this source was planned before by this transformers, else `build()` measured
    and stored."""
    from importlib.metadata import version

    from musicgen_cli.store.cache import atomic_write_text, cache_root

    key = f"sizes {SIZES_VERSION} | transformers {version('transformers')} | {source}"
    path = cache_root(cache_dir) / SIZES_FILE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    try:
        stored = known[key]
        sizes = {**stored["sizes"], "no_split": tuple(stored["sizes"]["no_split"])}
        sizes["modules"] = {name: ModuleSize(**m) for name, m in sizes["modules"].items()}
        return ConfigView(stored["config"], ModelSizes(**sizes))
    except (KeyError, TypeError):
        pass
    config = build()
    known[key] = {"config": config.to_dict(), "sizes": asdict(model_sizes(config))}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(known, indent=1))  # modules keep their execution order
    except OSError:
        pass  # a read-only cache: plans still work, measured each time
    return config


def _measure(config, model) -> ModelSizes:
    modules = {name: _module_size(m) for name, m in device_map_modules(model).items()}
    covered = sum(s.params for s in modules.values())
    total = sum(p.numel() for p in model.parameters() if p.is_floating_point())
    if covered != total:
        raise RuntimeError(f"device-map modules cover {covered} of {total} parameters of {config.model_type}")
    dec = config.decoder
    codec = config.audio_encoder
    melody = is_melody(config)
    return ModelSizes(
        modules=modules,
        model_type=config.model_type,
        hidden=dec.hidden_size,
        num_layers=dec.num_hidden_layers,
        heads=dec.num_attention_heads,
        ffn=dec.ffn_dim,
        num_codebooks=dec.num_codebooks,
        vocab=dec.vocab_size,
        audio_channels=getattr(dec, "audio_channels", 1),
        cross_attention=not melody,
        frame_rate=codec.sampling_rate / math.prod(codec.upsampling_ratios),
        sample_rate=codec.sampling_rate,
        max_positions=dec.max_position_embeddings,
        prefix_frames=getattr(config, "chroma_length", 0) if melody else 0,
        codec_filters=codec.num_filters,
        no_split=tuple(sorted(model._no_split_modules or ())),
    )


# --- job ---------------------------------------------------------------------------------


def decode_steps(duration_s: float, sizes: ModelSizes) -> int:
    """Decoder steps for a clip (arch.decode_steps)."""
    return arch.decode_steps(math.ceil(duration_s * sizes.frame_rate), sizes.num_codebooks, sizes.audio_channels)


def context_frames(duration_s: float, window_s: float, sizes: ModelSizes, text_tokens: int = K.TEXT_TOKENS) -> int:
    """Longest sequence the self-attention cache ever holds (windows cap it for long clips)."""
    frames = decode_steps(min(duration_s, window_s), sizes)
    prefix = sizes.prefix_frames + (text_tokens if not sizes.cross_attention else 0)
    return min(frames + prefix, sizes.max_positions + prefix)


@dataclass(frozen=True)
class JobBytes:
    """Memory that grows with the job, per decoder layer and per device."""

    kv_per_layer: int  # self- plus cross-attention K and V of one layer
    step_transient: int  # logits, activations and attention scores of one step
    codec_decode: int  # EnCodec's peak while decoding (whole clip, or one chunk), in RAM
    codec_decode_vram: int  # the same decode's live tensors on a GPU
    codec_chunk_s: float | None  # None: the clip decodes in one go
    text_encoder_run: int  # T5 activations for the prompt batch
    audio_out: int  # the float32 waveforms returned


def batch(num_samples: int, guidance: bool) -> int:
    """Classifier-free guidance runs a conditional and an unconditional copy of each sample."""
    return num_samples * (2 if guidance else 1)


def job_bytes(
    sizes: ModelSizes,
    *,
    duration_s: float,
    num_samples: int,
    guidance: bool,
    window_s: float,
    dtype: str,
    codec_dtype: str,
    codec_budget: int | None = None,
    prompt_s: float = 0.0,
    text_tokens: int = K.TEXT_TOKENS,
) -> JobBytes:
    """`prompt_s`: seconds of given audio continued (in the cache and the decoded clip);
    `text_tokens`: T5 tokens of the longest prompt."""
    width = DTYPE_BYTES[dtype]
    b = batch(num_samples, guidance)
    ctx = context_frames(prompt_s + duration_s, window_s, sizes, text_tokens)
    duration_s += prompt_s  # EnCodec decodes and returns the given audio with the new part
    kv = 2 * b * ctx * sizes.hidden * width
    if sizes.cross_attention:
        kv += 2 * b * text_tokens * sizes.hidden * width
    # The first step of a melody model runs the whole prefix at once; later steps one frame.
    query = 1 + sizes.prefix_frames + (text_tokens if not sizes.cross_attention else 0) if sizes.prefix_frames else 1
    logits = b * sizes.num_codebooks * (sizes.vocab + 1) * 4 * 3  # fp32 logits, softmax, top-k copy
    activations = b * query * (sizes.ffn + 6 * sizes.hidden) * width
    scores = b * sizes.heads * query * ctx * 4
    transient = int((logits + activations + scores) * K.ALLOCATOR_SLACK)

    samples = num_samples * sizes.audio_channels
    codec_width = DTYPE_BYTES[codec_dtype]
    per_second = K.CODEC_LIVE_TENSORS * sizes.codec_filters * sizes.sample_rate * codec_width * num_samples
    chunk_s: float | None = None
    seconds = duration_s
    if codec_budget is not None and per_second * duration_s > codec_budget and duration_s > K.CODEC_CHUNK_S:
        chunk_s = K.CODEC_CHUNK_S
        seconds = chunk_s
    t5_run = b * text_tokens * 3072 * 4 * 2  # T5-base FFN activations in fp32
    return JobBytes(
        kv_per_layer=kv,
        step_transient=transient,
        codec_decode=int(per_second * seconds),
        codec_decode_vram=int(per_second * seconds * K.CODEC_LIVE_TENSORS_VRAM / K.CODEC_LIVE_TENSORS),
        codec_chunk_s=chunk_s,
        text_encoder_run=t5_run,
        audio_out=int(samples * duration_s * sizes.sample_rate * 4),
    )


def entry_config(manifest, entry, cache_dir: str | Path | None = None):
    """The config to plan with: the cached folder's config.json, else a shape-faithful one.

    Planning needs no weights, so a model that is not downloaded is sized from the shape the
    manifest records (decoder size, stereo, melody) with t5-base and the 32 kHz EnCodec.
    """
    from musicgen_cli.errors import MgenError

    folder = manifest.folder(entry)
    if (folder / "config.json").is_file():
        return folder_config(folder, cache_dir)
    if entry.shape is None:
        raise MgenError(
            f"cannot size {entry.key!r}: it is not downloaded and the manifest does not record its shape",
            f"download it first (mgen download {entry.repo_id or entry.key})",
        )
    caps = entry.capabilities
    variant = "melody" if caps.melody else "stereo" if caps.stereo else "mono"
    return planning_config(f"shape {entry.shape} {variant}{' stereo' if caps.melody and caps.stereo else ''}",
                           lambda: _shape_config(entry.shape, variant, caps.melody and caps.stereo), cache_dir)


def folder_config(folder: Path, cache_dir: str | Path | None = None):
    """A model folder's config to plan with, keyed by its config.json's bytes."""
    import hashlib

    def build():
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(folder)

    if not (folder / "config.json").is_file():
        return build()  # transformers says what the folder lacks
    digest = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    return planning_config(f"config.json {digest}", build, cache_dir)


def _shape_config(shape: str, variant, stereo_melody: bool):
    from transformers.utils import logging

    from musicgen_cli.arch import build_config

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the shape configs' pad token id is outside the vocabulary on purpose
    try:
        config = build_config(shape, variant)
    finally:
        logging.set_verbosity(verbosity)
    if stereo_melody:
        # Stereo melody: the melody architecture with the stereo codebook layout.
        config.decoder.num_codebooks, config.decoder.audio_channels = 8, 2
    return config
