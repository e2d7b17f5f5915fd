"""What a transformers MusicGen folder holds, and what its config says about the model.

Shared by the hub download (which files to fetch) and `mgen import` (which files to copy,
which capabilities to record), so both agree on one layout.
"""

from __future__ import annotations

import fnmatch

from musicgen_cli.arch import is_melody, shape_name
from musicgen_cli.store.manifest import USER_MANIFEST_NAME, Capabilities, ModelEntry

# What the transformers backend reads; everything else in a repo (pytorch_model.bin copies,
# audiocraft checkpoints) would only cost disk and bandwidth.
TRANSFORMERS_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "spiece.model",
        "README.md",
    }
)
WEIGHT_PATTERN = "model*.safetensors"
AUDIOCRAFT_FILES = frozenset({"state_dict.bin", "compression_state_dict.bin"})



def wanted_by_transformers(name: str) -> bool:
    return name in TRANSFORMERS_FILES or is_weight_file(name)


def is_weight_file(name: str) -> bool:
    return "/" not in name and fnmatch.fnmatch(name, WEIGHT_PATTERN)


def traits_from_config(config: dict) -> tuple[str | None, Capabilities]:
    """The manifest shape and capabilities of a model, from its config.json contents."""
    decoder = config.get("decoder") or {}
    channels = int(decoder.get("audio_channels", 1))
    shape = shape_name(decoder.get("hidden_size"), decoder.get("num_hidden_layers"))
    caps = Capabilities(
        text=True,
        melody=is_melody(config),
        stereo=channels == 2,
        channels=channels,
    )
    return shape, caps


def shape_mismatch(entry: ModelEntry, shape: str | None, config: dict) -> str | None:
    """One line when the manifest declares a shape and config.json is another one, else None."""
    if entry.shape is None or entry.shape == shape:
        return None
    decoder = config.get("decoder") or {}
    dims = f"{decoder.get('hidden_size')} hidden x {decoder.get('num_hidden_layers')} layers"
    real = f"a {shape} model" if shape else "no released shape"
    return (
        f"{entry.key}: config.json describes {real} ({dims}), not the manifest's {entry.shape!r}; "
        f"recorded as {shape or 'unknown'} in {USER_MANIFEST_NAME}"
    )
