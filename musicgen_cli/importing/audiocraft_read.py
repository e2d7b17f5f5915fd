"""Reading audiocraft MusicGen checkpoints and deriving their architecture.

audiocraft (which pins an old torch) stores a MusicGen as `state_dict.bin` (the LM with its
Hydra config under `xp.cfg`) and `compression_state_dict.bin` (the EnCodec). This module reads
both without running pickled code, renames their weights into transformers' names (the rules),
and derives the decoder's and the codec's hyper-parameters from the checkpoint's own config
and tensor shapes. `audiocraft` turns that into a model folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from musicgen_cli.errors import MgenError
from musicgen_cli.importing.keymatch import Rule, rename
from musicgen_cli.store.safeload import config_value, load_torch_file, plain_config

LM_FILE = "state_dict.bin"
CODEC_FILE = "compression_state_dict.bin"
CODEC_PREFIX = "compression."  # source names of the codec file, kept apart from the LM's
# Where audiocraft's exports and training checkpoints keep the weights, most preferred first
# (export_lm prefers the FSDP best state when it is not empty).
_WRAPPERS = ("fsdp_best_state", "best_state", "state_dict", "state", "model")

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


def renamed_shapes(tensors: dict) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape under its transformers name (as the rules rename it)."""
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
