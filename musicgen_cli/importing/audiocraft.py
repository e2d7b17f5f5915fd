"""Convert audiocraft-format MusicGen checkpoints into the transformers layout, once.

audiocraft (which pins an old torch) stores a MusicGen as `state_dict.bin` (the LM with its
Hydra config under `xp.cfg`) and `compression_state_dict.bin` (the EnCodec). This module reads
both without running pickled code (`audiocraft_read`), derives the architecture from the checkpoint's
own config and tensor shapes, matches every weight to the transformers model with `keymatch` (each match
recording how it was found), and writes a ready model folder into the cache. The T5 text encoder
and tokenizer come from a base model, as audiocraft never stores a frozen T5.

Nothing is guessed: a target weight nothing fills, or a shape that differs, stops the import
with the match report saying which.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from musicgen_cli.arch import is_melody, shape_name
from musicgen_cli.errors import MgenError, ModelNotFound
from musicgen_cli.events import NullReporter, Reporter
from musicgen_cli.importing.audiocraft_read import (
    IGNORED_SOURCE,
    RULES,
    AudiocraftFile,
    LmArch,
    derive_codec,
    derive_lm,
    find_files,
    read_audiocraft_file,
    renamed_shapes,
    source_tensors,
)
from musicgen_cli.importing.keymatch import MatchReport, match_keys
from musicgen_cli.store.safeload import config_value
from musicgen_cli.store.cache import is_ready, safe_child
from musicgen_cli.store.manifest import Capabilities, ModelEntry, load_manifest

_BASE_FILES = (
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "spiece.model",
    "added_tokens.json",
)
REPORT_FILE = "mgen-import-report.json"


class ImportRefused(MgenError):
    """The checkpoint does not convert cleanly; `report` says which weights are the problem."""

    def __init__(self, message: str, fix: str, report: MatchReport):
        super().__init__(message, fix)
        self.report = report


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
    shapes = renamed_shapes(source)
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
    melody = any(n.endswith("audio_enc_to_dec_proj.weight") for n in renamed_shapes(lm.tensors))
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
