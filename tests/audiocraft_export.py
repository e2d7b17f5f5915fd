"""Write transformers MusicGen models as audiocraft-format checkpoints, for import tests.

The layout follows audiocraft's own code: LMModel (`emb.N`, `transformer.layers.N` with fused
`in_proj_weight`, `linears.N`, `out_norm`, the conditioners' `output_proj`), EncodecModel
(SEANet `encoder.model.N.conv.conv` with `weight_g`/`weight_v` from torch.nn.utils.weight_norm,
`quantizer.vq.layers.N._codebook.*`), and the file wrappers of `audiocraft.utils.export`
(`best_state` + `xp.cfg` + `version` + `exported`) and of training checkpoints
(`best_state: {model: ...}`, `fsdp_best_state`, optimizer state).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

_LM_NAMES = (
    (r"^decoder\.model\.decoder\.embed_tokens\.", "emb."),
    (r"^decoder\.model\.decoder\.layers\.", "transformer.layers."),
    (r"^decoder\.model\.decoder\.layer_norm\.", "out_norm."),
    (r"^decoder\.lm_heads\.", "linears."),
    (r"^enc_to_dec_proj\.", "condition_provider.conditioners.description.output_proj."),
    (r"^audio_enc_to_dec_proj\.", "condition_provider.conditioners.self_wav.output_proj."),
    (r"\.encoder_attn_layer_norm\.", ".norm_cross."),
    (r"\.self_attn_layer_norm\.", ".norm1."),
    (r"\.final_layer_norm\.", ".norm2."),
    (r"\.encoder_attn\.", ".cross_attention."),
    (r"\.fc1\.", ".linear1."),
    (r"\.fc2\.", ".linear2."),
)


def lm_state(model) -> dict[str, torch.Tensor]:
    """The LM's state dict as audiocraft's LMModel names it (q/k/v fused)."""
    state = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in model.state_dict().items():
        if name.startswith(("text_encoder.", "audio_encoder.")):
            continue
        for pattern, repl in _LM_NAMES:
            name = re.sub(pattern, repl, name)
        qkv = re.match(r"^(.*)\.([qkv])_proj\.weight$", name)
        if qkv:
            fused.setdefault(qkv.group(1), {})[qkv.group(2)] = tensor
        else:
            state[name] = tensor.clone()
    for module, parts in fused.items():
        state[f"{module}.in_proj_weight"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    if model.config.model_type == "musicgen_melody":  # buffers audiocraft's chroma extractor saves
        state["condition_provider.conditioners.self_wav.chroma.fbanks"] = torch.rand(12, 8193)
        state["condition_provider.conditioners.self_wav.chroma.spec.window"] = torch.hann_window(16384)
    return state


def codec_state(model) -> dict[str, torch.Tensor]:
    """The EnCodec's state dict as audiocraft's SEANet/RVQ names it."""
    codec = model.audio_encoder
    state = {}
    for name, tensor in codec.state_dict().items():
        name = name.replace(".parametrizations.weight.original0", ".weight_g")
        name = name.replace(".parametrizations.weight.original1", ".weight_v")
        layer = re.match(r"^(encoder|decoder)\.layers\.(\d+)\.(.*)$", name)
        if layer:
            part, index, rest = layer.groups()
            transposed = "Transpose" in type(codec.get_submodule(f"{part}.layers.{index}")).__name__
            rest = re.sub(r"^conv\.", "convtr.convtr." if transposed else "conv.conv.", rest)
            rest = re.sub(r"^((?:block\.\d+|shortcut)\.)conv\.", r"\1conv.conv.", rest)
            name = f"{part}.model.{index}.{rest}"
        name = re.sub(r"^quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.vq.layers.\1._codebook.", name)
        state[name] = tensor.clone()
    return state


def lm_cfg(model) -> dict:
    """An xp.cfg like audiocraft's musicgen solver configs (config/model/lm/musicgen_lm.yaml)."""
    dec = model.config.decoder
    melody = model.config.model_type == "musicgen_melody"
    stereo = dec.audio_channels == 2
    delays = [i // 2 for i in range(dec.num_codebooks)] if stereo else list(range(dec.num_codebooks))
    conditioners = {"description": {"model": "t5", "t5": {"name": "t5-base", "finetune": False, "word_dropout": 0.3, "normalize_text": False}}}
    if melody:
        conditioners["self_wav"] = {"model": "chroma_stem", "chroma_stem": {"sample_rate": "${sample_rate}", "n_chroma": 12, "radix2_exp": 14, "argmax": True}}
    return {
        "sample_rate": 32000,
        "channels": dec.audio_channels,
        "compression_model_checkpoint": "//pretrained/facebook/encodec_32khz",
        "lm_model": "transformer_lm",
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": delays, "flatten_first": 0, "empty_initial": 0}},
        "transformer_lm": {
            "dim": dec.hidden_size,
            "num_heads": dec.num_attention_heads,
            "num_layers": dec.num_hidden_layers,
            "hidden_scale": dec.ffn_dim // dec.hidden_size,
            "n_q": dec.num_codebooks,
            "card": dec.vocab_size,
            "dropout": 0.0,
            "activation": "gelu",
            "norm_first": True,
            "bias_ff": False,
            "bias_attn": False,
            "bias_proj": False,
            "causal": True,
            "custom": False,
            "memory_efficient": True,
            "layer_scale": None,
            "positional_embedding": "sin",
            "cross_attention": False,
            "kv_repeat": 1,
            "norm": "layer_norm",
        },
        "classifier_free_guidance": {"training_dropout": 0.3, "inference_coef": 3.0},
        "fuser": {"cross_attention_pos_emb": False, "sum": [], "prepend": ["self_wav", "description"] if melody else [], "cross": [] if melody else ["description"]},
        "conditioners": conditioners,
        "interleave_stereo_codebooks": {"use": stereo, "per_timestep": False},
        "dataset": {"segment_duration": 30},
    }


def codec_cfg(model) -> dict:
    """An xp.cfg like config/solver/compression/encodec_musicgen_32khz.yaml (interpolations kept)."""
    c = model.config.audio_encoder
    return {
        "sample_rate": c.sampling_rate,
        "channels": c.audio_channels,
        "compression_model": "encodec",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": "${sample_rate}", "channels": "${channels}", "causal": c.use_causal_conv, "renormalize": c.normalize},
        "seanet": {
            "dimension": c.hidden_size,
            "channels": "${channels}",
            "causal": "${encodec.causal}",
            "n_filters": c.num_filters,
            "n_residual_layers": c.num_residual_layers,
            "ratios": list(c.upsampling_ratios),
            "norm": "weight_norm",
            "kernel_size": c.kernel_size,
            "residual_kernel_size": c.residual_kernel_size,
            "last_kernel_size": c.last_kernel_size,
            "dilation_base": c.dilation_growth_rate,
            "pad_mode": c.pad_mode,
            "true_skip": not c.use_conv_shortcut,
            "compress": c.compress,
            "lstm": c.num_lstm_layers,
            "decoder": {"trim_right_ratio": c.trim_right_ratio},
        },
        "rvq": {"n_q": c.num_quantizers, "bins": c.codebook_size},
    }


def _as_cfg(cfg: dict, style: str):
    if style == "dict":
        return cfg
    if style == "yaml":  # what audiocraft.utils.export writes today (OmegaConf.to_yaml)
        import yaml

        return yaml.safe_dump(cfg)
    if style == "omegaconf":  # what the released facebook/musicgen-* files hold
        from omegaconf import OmegaConf

        return OmegaConf.create(cfg)
    raise ValueError(style)


def package(state: dict, cfg: dict, *, wrapper: str = "export", cfg_style: str = "dict") -> dict:
    """Wrap a state dict the way audiocraft's exporter or its training solver does."""
    cfg = _as_cfg(cfg, cfg_style)
    if wrapper == "export":
        return {"best_state": state, "xp.cfg": cfg, "version": "1.3.0", "exported": True}
    if wrapper == "training":
        optimizer = {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
        return {"model": state, "best_state": {"model": state}, "fsdp_best_state": {}, "optimizer": optimizer, "xp.cfg": cfg, "epoch": 3}
    raise ValueError(wrapper)


def write_audiocraft(
    folder: Path,
    model,
    *,
    wrapper: str = "export",
    cfg_style: str = "dict",
    lm_edit=None,
    codec_edit=None,
) -> Path:
    """state_dict.bin + compression_state_dict.bin for `model`; the edits may rename or drop keys."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lm, codec = lm_state(model), codec_state(model)
    lm = lm_edit(lm) if lm_edit else lm
    codec = codec_edit(codec) if codec_edit else codec
    torch.save(package(lm, lm_cfg(model), wrapper=wrapper, cfg_style=cfg_style), folder / "state_dict.bin")
    torch.save(package(codec, codec_cfg(model), wrapper=wrapper, cfg_style=cfg_style), folder / "compression_state_dict.bin")
    return folder
