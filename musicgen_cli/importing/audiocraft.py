"""Convert audiocraft-format MusicGen checkpoints into the transformers layout, once.

audiocraft (which pins an old torch) stores a MusicGen as `state_dict.bin` (the LM with its
Hydra config under `xp.cfg`) and `compression_state_dict.bin` (the EnCodec). This module reads
both without running pickled code, derives the architecture from the checkpoint's own config and
tensor shapes, matches every weight to the transformers model with `keymatch` (each match
recording how it was found), and writes a ready model folder into the cache. The T5 text encoder
and tokenizer come from a base model, as audiocraft never stores a frozen T5.

Nothing is guessed: a target weight nothing fills, or a shape that differs, stops the import
with the match report saying which.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from musicgen_cli.arch import is_melody, shape_name
from musicgen_cli.errors import MgenError, ModelNotFound
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.importing.keymatch import MatchReport, Rule, match_keys, rename
from musicgen_cli.importing.safeload import config_value, load_torch_file, plain_config
from musicgen_cli.store.cache import is_ready, safe_child
from musicgen_cli.store.manifest import Capabilities, ModelEntry, load_manifest

LM_FILE = "state_dict.bin"
CODEC_FILE = "compression_state_dict.bin"
CODEC_PREFIX = "compression."  # source names of the codec file, kept apart from the LM's
# Where audiocraft's exports and training checkpoints keep the weights, most preferred first
# (export_lm prefers the FSDP best state when it is not empty).
_WRAPPERS = ("fsdp_best_state", "best_state", "state_dict", "state", "model")
_BASE_FILES = (
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "spiece.model",
    "added_tokens.json",
)
REPORT_FILE = "mgen-import-report.json"

# audiocraft LMModel -> transformers MusicgenForConditionalGeneration (see transformers'
# convert_musicgen_transformers.py). Rules match whole dotted components, so they also rename
# names saved under an extra prefix, which the suffix layer then places.
LM_RULES: tuple[Rule, ...] = (
    Rule(r"\.mha\.", "."),  # audiocraft's non-custom attention wraps nn.MultiheadAttention
    Rule(r"\.in_proj_weight\[([qkv])\]$", r".\1_proj.weight"),
    Rule(r"\.in_proj_bias\[([qkv])\]$", r".\1_proj.bias"),
    Rule(r"(?<![^.])transformer\.layers\.", "decoder.model.decoder.layers."),
    Rule(r"\.cross_attention\.", ".encoder_attn."),
    Rule(r"\.linear1\.", ".fc1."),
    Rule(r"\.linear2\.", ".fc2."),
    Rule(r"\.norm1\.", ".self_attn_layer_norm."),
    Rule(r"\.norm2\.", ".final_layer_norm."),
    Rule(r"\.norm_cross\.", ".encoder_attn_layer_norm."),
    Rule(r"(?<![^.])out_norm\.", "decoder.model.decoder.layer_norm."),
    Rule(r"(?<![^.])emb\.(\d+)\.", r"decoder.model.decoder.embed_tokens.\1."),
    Rule(r"(?<![^.])linears\.(\d+)\.", r"decoder.lm_heads.\1."),
    Rule(r"(?<![^.])condition_provider\.conditioners\.description\.output_proj\.", "enc_to_dec_proj."),
    Rule(r"(?<![^.])condition_provider\.conditioners\.self_wav\.output_proj\.", "audio_enc_to_dec_proj."),
    Rule(r"(?<![^.])condition_provider\.conditioners\.description\.t5\.", "text_encoder."),  # finetuned T5
)
# audiocraft EncodecModel (SEANet + RVQ) -> transformers EncodecModel (see transformers'
# convert_encodec_checkpoint_to_pytorch.py).
CODEC_RULES: tuple[Rule, ...] = (
    Rule(r"^compression\.", "audio_encoder."),
    Rule(r"(?<![^.])(encoder|decoder)\.model\.(\d+)\.", r"\1.layers.\2."),
    Rule(r"\.conv\.conv\.", ".conv."),
    Rule(r"\.convtr\.convtr\.", ".conv."),
    Rule(r"\.(conv|convtr)\.norm\.", ".norm."),
    Rule(r"\.quantizer\.vq\.layers\.(\d+)\._codebook\.", r".quantizer.layers.\1.codebook."),
)
RULES = LM_RULES + CODEC_RULES
# Buffers audiocraft saves that are not weights: the chroma extractor's filter bank and window.
IGNORED_SOURCE = (r"(?<![^.])self_wav\.chroma\.",)


class ImportRefused(MgenError):
    """The checkpoint does not convert cleanly; `report` says which weights are the problem."""

    def __init__(self, message: str, fix: str, report: MatchReport):
        super().__init__(message, fix)
        self.report = report


@dataclass
class AudiocraftFile:
    """One audiocraft file: its tensors, its config, or a reference to a pretrained codec."""

    path: Path
    tensors: dict[str, Any]
    cfg: dict
    pretrained: str | None = None


@dataclass(frozen=True)
class LmArch:
    """The decoder's architecture as the checkpoint's shapes (and config) say."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    codebooks: int
    card: int
    channels: int
    cross_attention: bool
    text_dim: int
    chroma_dim: int | None  # set for melody models
    activation: str

    @property
    def melody(self) -> bool:
        return self.chroma_dim is not None


@dataclass
class ImportResult:
    entry: ModelEntry
    folder: Path
    report: MatchReport
    arch: LmArch
    codec: dict
    base: str
    audio_shape: tuple[int, ...] | None
    notes: list[str] = field(default_factory=list)


def find_files(paths: Sequence[Path | str]) -> tuple[Path, Path]:
    """(state_dict.bin, compression_state_dict.bin) from a folder, or from one or two files."""
    paths = [Path(p).expanduser() for p in paths]
    if len(paths) == 1 and paths[0].is_dir():
        paths = [paths[0] / LM_FILE, paths[0] / CODEC_FILE]
    if not paths or len(paths) > 2:
        raise MgenError("give a folder, or the LM file and the compression file", "e.g. mgen import-audiocraft ./my-finetune --key mine")
    codec = [p for p in paths if "compression" in p.name]
    lm = [p for p in paths if p not in codec]
    if len(lm) != 1:
        raise MgenError(f"cannot tell which of {', '.join(p.name for p in paths)} is the LM", f"name the LM file {LM_FILE}")
    if not codec:
        codec = [lm[0].with_name(CODEC_FILE)]
    for path in (lm[0], codec[0]):
        if not path.is_file():
            raise MgenError(f"{path} does not exist", f"pass the folder holding {LM_FILE} and {CODEC_FILE}")
    return lm[0], codec[0]


def read_audiocraft_file(path: Path) -> AudiocraftFile:
    """Load one file (weights only) and unwrap its state dict and config."""
    pkg = load_torch_file(path)
    if not isinstance(pkg, dict):
        raise MgenError(f"{path.name} holds a {type(pkg).__name__}, not a checkpoint dict", "pass an audiocraft state_dict.bin")
    cfg = plain_config(pkg.get("xp.cfg"))
    if isinstance(pkg.get("pretrained"), str) and not _is_state_dict(pkg):
        return AudiocraftFile(path, {}, cfg, pretrained=pkg["pretrained"])
    return AudiocraftFile(path, _unwrap(pkg, path), cfg)


def _is_state_dict(node: Any) -> bool:
    import torch

    return isinstance(node, dict) and bool(node) and all(isinstance(v, torch.Tensor) for v in node.values())


def _unwrap(pkg: dict, path: Path) -> dict:
    node: Any = pkg
    for _ in range(3):  # e.g. a training checkpoint: {"best_state": {"model": {...}}}
        if _is_state_dict(node):
            return dict(node)
        inner = next((node[k] for k in _WRAPPERS if isinstance(node.get(k), dict) and node[k]), None)
        if inner is None:
            break
        node = inner
    raise MgenError(
        f"{path.name} holds no state dict (looked under {', '.join(_WRAPPERS)})",
        "pass an audiocraft export (state_dict.bin) or a training checkpoint",
    )


def source_tensors(lm: AudiocraftFile, codec: AudiocraftFile) -> dict:
    """The source weights under the names the rules expect; fused q/k/v split in three."""
    tensors = {}
    for name, tensor in lm.tensors.items():
        fused = re.match(r"^(.*)\.in_proj_(weight|bias)$", name)
        if fused:
            rows = tensor.shape[0] // 3
            for i, part in enumerate("qkv"):
                tensors[f"{name}[{part}]"] = tensor[i * rows : (i + 1) * rows]
        else:
            tensors[name] = tensor
    tensors.update({CODEC_PREFIX + name: t for name, t in codec.tensors.items()})
    return tensors


def _renamed_shapes(tensors: dict) -> dict[str, tuple[int, ...]]:
    return {rename(name, RULES): tuple(tensor.shape) for name, tensor in tensors.items()}


def _find(shapes: dict, pattern: str) -> dict[str, tuple]:
    """{first group of `pattern`: shape} over the names it matches."""
    return {found.group(1): shape for name, shape in shapes.items() if (found := re.search(pattern, name))}


def derive_lm(lm: AudiocraftFile, shapes: dict, base_decoder, codec_quantizers: int) -> tuple[LmArch, list[str]]:
    """Decoder hyper-parameters from tensor shapes; heads and channels from the config.

    Without a config (a bare `lm.state_dict()`), the head count comes from the base model when
    the hidden sizes agree (every released MusicGen uses 64-wide heads otherwise), and a model
    with more codebooks than its codec has quantizers must interleave two channels.
    """
    cfg = lm.cfg
    notes = []
    _check_supported(cfg)
    embeds = _find(shapes, r"(?:^|\.)embed_tokens\.(\d+)\.weight$")
    fc1 = _find(shapes, r"(?:^|\.)layers\.(\d+)\.fc1\.weight$")
    text = _find(shapes, r"(?:^|\.)(enc_to_dec_proj)\.weight$")
    if not embeds or not fc1 or not text:
        raise MgenError(
            f"{lm.path.name} does not look like a MusicGen LM (no codebook embeddings, layers or text projection)",
            f"pass audiocraft's {LM_FILE}",
        )
    vocab, hidden = embeds["0"]
    chroma = _find(shapes, r"(?:^|\.)(audio_enc_to_dec_proj)\.weight$")
    heads = config_value(cfg, "transformer_lm.num_heads")
    if heads is None:
        heads = base_decoder.num_attention_heads if base_decoder.hidden_size == hidden else max(1, hidden // 64)
        notes.append(f"the checkpoint has no transformer_lm.num_heads in xp.cfg; using {heads} heads")
    channels = config_value(cfg, "channels")
    if channels is None:
        channels = 2 if len(embeds) > codec_quantizers else 1
        notes.append(f"the checkpoint has no channels in xp.cfg; {channels} channel(s) from its codebook count")
    stereo = channels == 2 or bool(config_value(cfg, "interleave_stereo_codebooks.use"))
    arch = LmArch(
        hidden=hidden,
        layers=len(fc1),
        heads=int(heads),
        ffn=fc1["0"][0],
        codebooks=len(embeds),
        card=vocab - 1,  # audiocraft adds one embedding row for the special token
        channels=2 if stereo else 1,
        cross_attention=any(".encoder_attn." in n for n in shapes),
        text_dim=text["enc_to_dec_proj"][1],
        chroma_dim=chroma["audio_enc_to_dec_proj"][1] if chroma else None,
        activation=str(config_value(cfg, "transformer_lm.activation", "gelu")),
    )
    _check_config_agrees(cfg, arch)
    return arch, notes


def _check_config_agrees(cfg: dict, arch: LmArch) -> None:
    """The weights decide the architecture; a config that says otherwise means a mixed-up file."""
    said = {
        "transformer_lm.dim": arch.hidden,
        "transformer_lm.num_layers": arch.layers,
        "transformer_lm.n_q": arch.codebooks,
        "transformer_lm.card": arch.card,
    }
    wrong = [f"{k}={config_value(cfg, k)} but the weights say {v}" for k, v in said.items() if config_value(cfg, k, v) != v]
    if wrong:
        raise MgenError(f"the checkpoint's xp.cfg disagrees with its weights: {'; '.join(wrong)}", "check that the config belongs to these weights")


def _check_supported(cfg: dict) -> None:
    """Options transformers' MusicGen cannot express; silently converting them would be wrong."""
    problems = []
    if config_value(cfg, "transformer_lm.norm_first") is False:
        problems.append("post-norm layers (norm_first: false)")
    if config_value(cfg, "transformer_lm.positional_embedding", "sin") != "sin":
        problems.append(f"positional_embedding {config_value(cfg, 'transformer_lm.positional_embedding')}")
    if config_value(cfg, "transformer_lm.layer_scale") is not None:
        problems.append("layer_scale")
    if (config_value(cfg, "transformer_lm.kv_repeat") or 1) != 1:
        problems.append("grouped key/values (kv_repeat)")
    if config_value(cfg, "transformer_lm.bias_ff") or config_value(cfg, "transformer_lm.bias_attn"):
        problems.append("biases in the attention or feed-forward layers")
    if config_value(cfg, "codebooks_pattern.modeling", "delay") != "delay":
        problems.append(f"codebook pattern {config_value(cfg, 'codebooks_pattern.modeling')}")
    if problems:
        raise MgenError(
            f"the checkpoint uses {', '.join(problems)}, which transformers' MusicGen does not support",
            "only MusicGen-style checkpoints (pre-norm, sinusoidal positions, delay pattern) can be imported",
        )


def derive_codec(codec: AudiocraftFile, shapes: dict, base_codec: dict) -> dict:
    """EncodecConfig fields from the SEANet/RVQ shapes; strides come from the kernel sizes."""
    cfg = codec.cfg
    convs = _find(shapes, r"(?:^|\.)encoder\.layers\.(\d+)\.conv\.weight(?:_v)?$")
    blocks = _find(shapes, r"(?:^|\.)encoder\.layers\.(\d+)\.block\.1\.conv\.weight(?:_v)?$")
    codebooks = _find(shapes, r"(?:^|\.)quantizer\.layers\.(\d+)\.codebook\.embed$")
    if not convs or not codebooks:
        raise MgenError(f"{codec.path.name} does not look like an EnCodec model", f"pass audiocraft's {CODEC_FILE}")
    order = sorted(convs, key=int)
    first, last = convs[order[0]], convs[order[-1]]
    # SEANet downsamples with kernel 2*ratio; transformers lists the ratios decoder-first.
    ratios = [convs[i][2] // 2 for i in order[1:-1]][::-1]
    lstm = _find(shapes, r"(?:^|\.)encoder\.layers\.\d+\.lstm\.weight_ih_l(\d+)$")
    codebook_size, codebook_dim = codebooks["0"]
    derived = dict(
        audio_channels=first[1],
        num_filters=first[0],
        kernel_size=first[2],
        last_kernel_size=last[2],
        hidden_size=last[0],
        upsampling_ratios=ratios,
        num_residual_layers=max(1, len(blocks) // max(1, len(ratios))),
        num_lstm_layers=len(lstm),
        use_conv_shortcut=any(re.search(r"(?:^|\.)encoder\.layers\.\d+\.shortcut\.", n) for n in shapes),
        codebook_size=codebook_size,
        codebook_dim=codebook_dim,
        norm_type="weight_norm" if any(n.endswith(".weight_v") for n in shapes) else base_codec.get("norm_type"),
    )
    if blocks:
        block = next(iter(blocks.values()))
        derived.update(residual_kernel_size=block[2], compress=max(1, block[1] // block[0]))
    options = {
        "sampling_rate": config_value(cfg, "sample_rate"),
        "use_causal_conv": config_value(cfg, "encodec.causal"),
        "normalize": config_value(cfg, "encodec.renormalize"),
        "pad_mode": config_value(cfg, "seanet.pad_mode"),
        "dilation_growth_rate": config_value(cfg, "seanet.dilation_base"),
        "trim_right_ratio": config_value(cfg, "seanet.decoder.trim_right_ratio"),
    }
    result = {**base_codec, **derived, **{k: v for k, v in options.items() if v is not None}}
    result["target_bandwidths"] = [_bandwidth(len(codebooks), result)]
    return result


def _bandwidth(n_q: int, codec: dict) -> float:
    """The bandwidth (kbps) for which transformers' EncodecConfig uses exactly n_q codebooks."""
    import math

    hop = math.prod(codec["upsampling_ratios"])
    frame_rate = math.ceil(codec["sampling_rate"] / hop)
    return round(n_q * frame_rate * math.ceil(math.log2(codec["codebook_size"])) / 1000, 6)


def build_target_config(base_config, arch: LmArch, codec: dict):
    """The transformers config of the converted model: base's T5, derived decoder and codec."""
    from transformers import EncodecConfig

    decoder = dict(
        vocab_size=arch.card,
        max_position_embeddings=base_config.decoder.max_position_embeddings,
        num_hidden_layers=arch.layers,
        ffn_dim=arch.ffn,
        num_attention_heads=arch.heads,
        hidden_size=arch.hidden,
        num_codebooks=arch.codebooks,
        audio_channels=arch.channels,
        pad_token_id=arch.card,
        bos_token_id=arch.card,
        dropout=0.0,
        activation_function=arch.activation,
        tie_word_embeddings=False,
    )
    parts = dict(text_encoder=base_config.text_encoder.to_dict(), audio_encoder=EncodecConfig(**_codec_kwargs(codec)).to_dict())
    if arch.melody:
        from transformers import MusicgenMelodyConfig, MusicgenMelodyDecoderConfig

        chroma_length = getattr(base_config, "chroma_length", 235)
        return MusicgenMelodyConfig(
            **parts, decoder=MusicgenMelodyDecoderConfig(**decoder).to_dict(), num_chroma=arch.chroma_dim, chroma_length=chroma_length
        )
    from transformers import MusicgenConfig, MusicgenDecoderConfig

    return MusicgenConfig(**parts, decoder=MusicgenDecoderConfig(**decoder).to_dict())


def _codec_kwargs(codec: dict) -> dict:
    skip = {"model_type", "transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype"}
    return {k: v for k, v in codec.items() if k not in skip}


def target_shapes(config) -> dict[str, tuple[int, ...]]:
    """Every weight name and shape of the transformers model, built on the meta device (free)."""
    import torch

    from musicgen_cli.arch import model_class

    with torch.device("meta"):
        model = model_class(config)(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def base_tensors(folder: Path, prefix: str) -> dict:
    """The base model's tensors whose names start with `prefix`, read lazily from safetensors."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise MgenError(f"base model {folder} has no .safetensors weights", "use a base downloaded by mgen download")
    tensors = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                if name.startswith(prefix):
                    tensors[name] = handle.get_tensor(name)
    return tensors


def convert(
    lm: AudiocraftFile,
    codec: AudiocraftFile,
    base_folder: Path,
    *,
    apply_proposed: bool = False,
) -> tuple[Any, dict, MatchReport, LmArch, dict, list[str]]:
    """Derive, match and assemble: (config, tensors by target name, report, arch, codec, notes)."""
    from transformers import AutoConfig, EncodecConfig

    base_config = AutoConfig.from_pretrained(base_folder)
    notes: list[str] = []
    source = source_tensors(lm, codec)
    shapes = _renamed_shapes(source)
    base_codec = base_config.audio_encoder.to_dict()
    if codec.pretrained:
        notes.append(f"the compression file names a pretrained codec ({codec.pretrained}); using the base model's EnCodec")
        codec_cfg = base_codec
    else:
        codec_cfg = derive_codec(codec, {n: s for n, s in shapes.items() if n.startswith("audio_encoder.")}, base_codec)
    quantizers = EncodecConfig(**_codec_kwargs(codec_cfg)).num_quantizers
    arch, lm_notes = derive_lm(lm, shapes, base_config.decoder, quantizers)
    notes += lm_notes
    _check_compatible(arch, codec_cfg, base_config)
    config = build_target_config(base_config, arch, codec_cfg)
    target = target_shapes(config)
    from_base = ("text_encoder.", "audio_encoder.") if codec.pretrained else ("text_encoder.",)
    report = match_keys(
        {n: tuple(t.shape) for n, t in source.items()},
        target,
        RULES,
        optional=[t for t in target if t.startswith(from_base)],
        ignore=IGNORED_SOURCE,
        apply_proposed=apply_proposed,
    )
    tensors = {}
    for prefix in from_base:
        tensors.update({n: t for n, t in base_tensors(base_folder, prefix).items() if n in target})
    tensors.update({t: source[s] for t, s in report.mapping().items()})
    return config, tensors, report, arch, codec_cfg, notes


def _check_compatible(arch: LmArch, codec: dict, base_config) -> None:
    text_dim = base_config.text_encoder.d_model
    if arch.text_dim != text_dim:
        raise MgenError(
            f"the LM expects text features of size {arch.text_dim} but the base model's T5 gives {text_dim}",
            "pick a --base whose text encoder matches the checkpoint's t5_name",
        )
    if arch.card != codec["codebook_size"]:
        raise MgenError(
            f"the LM predicts {arch.card} codes but the EnCodec has {codec['codebook_size']}",
            "pass the compression_state_dict.bin trained with this LM",
        )


def _refusal(report: MatchReport) -> ImportRefused | None:
    if report.shape_errors:
        first = report.shape_errors[0]
        return ImportRefused(
            f"{len(report.shape_errors)} weight(s) have the wrong shape, e.g. {first.source} {list(first.source_shape)} "
            f"-> {first.target} {list(first.target_shape)}",
            "the checkpoint's architecture differs from what its config says; see the report above",
            report,
        )
    if report.unmatched_target:
        hint = " (proposed matches exist: rerun with --apply-proposed to accept them)" if report.proposed else ""
        return ImportRefused(
            f"{len(report.unmatched_target)} required weight(s) missing, e.g. {report.unmatched_target[0]}{hint}",
            "the checkpoint is incomplete or uses unknown names; see the report above",
            report,
        )
    return None


def write_folder(folder: Path, config, tensors: dict, base_folder: Path, lm: AudiocraftFile, report: MatchReport) -> None:
    """The model folder in the facebook/musicgen-* layout (weights, configs, tokenizer)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({n: t.contiguous() for n, t in tensors.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(folder)
    generation = _read_json(base_folder / "generation_config.json")
    card = config.decoder.vocab_size
    generation.update(bos_token_id=card, pad_token_id=card, decoder_start_token_id=card)
    guidance = config_value(lm.cfg, "classifier_free_guidance.inference_coef")
    if guidance is not None:
        generation["guidance_scale"] = float(guidance)
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    for name in _BASE_FILES:
        if (base_folder / name).is_file():
            shutil.copyfile(base_folder / name, folder / name)
    (folder / REPORT_FILE).write_text(json.dumps(report.to_json(), indent=1))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def smoke_check(folder: Path, config, max_new_tokens: int = 8) -> tuple[int, ...]:
    """Load the written folder as the engine would and generate a few frames of audio."""
    import torch
    from transformers import AutoTokenizer

    from musicgen_cli.arch import model_class, quiet_transformers

    with quiet_transformers():  # the import reports its own phases
        model = model_class(config).from_pretrained(folder, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        with torch.no_grad():
            audio = model.generate(**tokenizer(["test"], return_tensors="pt"), max_new_tokens=max_new_tokens)
    channels = config.decoder.audio_channels
    if audio.ndim != 3 or audio.shape[1] != channels or audio.shape[-1] == 0 or not torch.isfinite(audio).all():
        raise MgenError(
            f"the converted model generated audio of shape {tuple(audio.shape)} (expected 1 x {channels} x samples, finite)",
            "the weights do not form a working model; report this checkpoint with the import report",
        )
    return tuple(audio.shape)


def default_base(lm: AudiocraftFile, melody: bool) -> str:
    """The manifest model lending T5 and tokenizer when --base is not given."""
    t5_name = config_value(lm.cfg, "conditioners.description.t5.name", "t5-base")
    if str(t5_name).split("/")[-1] != "t5-base":
        raise MgenError(
            f"the checkpoint's text encoder is {t5_name}, not t5-base like the released MusicGens",
            "pass --base with a MusicGen model folder whose text encoder is that T5",
        )
    return "melody" if melody else "small"


def import_audiocraft(
    paths: Sequence[Path | str],
    key: str,
    *,
    base: str | None = None,
    apply_proposed: bool = False,
    force: bool = False,
    check: bool = True,
    cache_dir: Path | str | None = None,
    reporter: Reporter | None = None,
) -> ImportResult:
    """Convert an audiocraft checkpoint into the cache under manifest key `key`."""
    from musicgen_cli.store import models

    reporter = reporter or NullReporter()
    manifest = load_manifest(cache_dir)
    folder = safe_child(manifest.root, key)
    existing = manifest.entries.get(key)
    if existing is not None and existing.source == "shipped":
        raise MgenError(f"{key!r} names a model that ships with mgen", "choose another --key")
    if (existing is not None or is_ready(folder)) and not force:
        raise MgenError(f"model {key!r} already exists", "choose another --key, or pass --force to replace it")
    lm_path, codec_path = find_files(paths)
    reporter.phase("read", f"{lm_path.name}, {codec_path.name}")
    lm, codec = read_audiocraft_file(lm_path), read_audiocraft_file(codec_path)
    melody = any(n.endswith("audio_enc_to_dec_proj.weight") for n in _renamed_shapes(lm.tensors))
    base = base or default_base(lm, melody)
    base_entry = manifest.get(base)
    try:
        base_folder = models.model_folder(manifest, base_entry, reporter=reporter)
    except ModelNotFound as exc:
        raise ModelNotFound(
            f"base model {base_entry.key!r}, which lends the T5 text encoder and tokenizer: {exc.message}",
            f"{exc.fix}, or pass --base with a MusicGen model you have",
        ) from None
    if is_melody(_read_json(base_folder / "config.json")) != melody:
        kind = "a melody" if melody else "a text-only"
        raise MgenError(f"the checkpoint is {kind} model but base {base!r} is not", f"pass --base {'melody' if melody else 'small'}")
    reporter.phase("match", f"base {base_entry.key}")
    config, tensors, report, arch, codec_cfg, notes = convert(lm, codec, base_folder, apply_proposed=apply_proposed)
    refusal = _refusal(report)
    if refusal:
        raise refusal
    if report.unmatched_source:
        notes.append(f"{len(report.unmatched_source)} source weight(s) matched nothing and were left out (listed above)")
    reporter.phase("write", str(folder))
    audio_shape = None
    with models.staged_model_folder(manifest, key) as tmp:
        write_folder(tmp, config, tensors, base_folder, lm, report)
        if check:
            reporter.phase("check", "loading the converted model and generating 8 frames")
            audio_shape = smoke_check(tmp, config)
    entry = models.register_local_model(
        manifest,
        key,
        shape=shape_name(arch.hidden, arch.layers, arch.heads, arch.ffn),
        capabilities=Capabilities(text=True, melody=arch.melody, stereo=arch.channels == 2, channels=arch.channels),
        description=f"imported from audiocraft checkpoint {lm_path.parent.name}/{lm_path.name}",
        marker={"imported_from": str(lm_path), "base": base_entry.key, "counts": report.counts()},
    )
    return ImportResult(entry, folder, report, arch, codec_cfg, base_entry.key, audio_shape, notes)


