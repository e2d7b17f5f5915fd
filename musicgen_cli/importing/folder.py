"""`mgen import`: check that a local folder holds a loadable MusicGen, then copy it into the cache.

The check reads no tensor data: the model is built on the meta device and its expected tensor
names and shapes are compared with the safetensors headers, so checking a 3B model is instant.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from musicgen_cli.arch import MUSICGEN_TYPES
from musicgen_cli.errors import MgenError
from musicgen_cli.events import NullReporter, Progress, Reporter
from musicgen_cli.store.cache import is_ready, safe_child
from musicgen_cli.store.layout import (
    is_weight_file,
    shape_mismatch,
    traits_from_config,
    wanted_by_transformers,
)
from musicgen_cli.store.manifest import Manifest, ModelEntry
from musicgen_cli.store.models import register_local_model, staged_model_folder

# Checkpoints written before torch's parametrized weight norm name its two halves the old way;
# transformers renames them on load, so they count as the same tensors.
_LEGACY_NAMES = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}
_SHOWN = 3  # how many offending tensor names an error lists
_VOCAB_FILES = ("tokenizer.json", "spiece.model")
_KEY = re.compile(r"^[A-Za-z0-9][\w.-]*$")  # also a folder name, and never mistaken for a repo id


@dataclass(frozen=True)
class CheckedFolder:
    folder: Path
    config: dict
    files: list[str]  # what to copy


def _fail(folder: Path, what: str, fix: str) -> MgenError:
    return MgenError(f"{folder} is not a loadable MusicGen: {what}", fix)


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise _fail(folder, "config.json is missing", "point at the folder that holds config.json and model.safetensors")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise _fail(folder, f"config.json line {exc.lineno}: {exc.msg}", "fix or re-download config.json") from None
    if not isinstance(config, dict) or config.get("model_type") not in MUSICGEN_TYPES:
        found = config.get("model_type") if isinstance(config, dict) else None
        raise _fail(
            folder,
            f"config.json has model_type {found!r}, not musicgen or musicgen_melody",
            "import a MusicGen checkpoint (transformers format)",
        )
    return config


def _weight_files(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError):
            raise _fail(folder, "model.safetensors.index.json has no weight_map", "re-download the index file") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise _fail(folder, f"weight shard {missing[0]} is missing", "copy every model-*.safetensors shard the index names")
        return shards
    if (folder / "model.safetensors").is_file():
        return ["model.safetensors"]
    raise _fail(folder, "no model.safetensors (or sharded index) found", "save the model with safe_serialization=True")


def _modern_name(name: str) -> str:
    for old, new in _LEGACY_NAMES.items():
        if name.endswith(old):
            return name[: -len(old)] + new
    return name


def _stored_shapes(folder: Path, shards: list[str]) -> dict[str, tuple[int, ...]]:
    from safetensors import SafetensorError, safe_open

    shapes = {}
    for shard in shards:
        try:
            with safe_open(str(folder / shard), framework="pt") as fh:
                for name in fh.keys():
                    shapes[_modern_name(name)] = tuple(fh.get_slice(name).get_shape())
        except (SafetensorError, OSError) as exc:
            raise _fail(
                folder, f"{shard} is not a readable safetensors file ({exc})", "re-download or re-save the weights"
            ) from None
    return shapes


def _expected_shapes(folder: Path) -> dict[str, tuple[tuple[int, ...], bool]]:
    """{tensor name: (shape, required)} for the config's model; weights tied to another are saved once.

    Only parameters are required: a missing one would load as random noise, while buffers
    (e.g. sinusoidal position tables) are rebuilt from the config and older checkpoints omit them.
    """
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    from musicgen_cli.arch import model_class

    try:
        config = AutoConfig.from_pretrained(folder)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise _fail(folder, f"transformers cannot read config.json ({exc})", "re-download config.json") from None
    with init_empty_weights():
        model = model_class(config)(config)
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    params = {name for name, _ in model.named_parameters()}
    return {name: (tuple(t.shape), name in params) for name, t in model.state_dict().items() if name not in tied}


def _check_tokenizer(folder: Path, config: dict) -> None:
    """The T5 tokenizer loads from its own vocabulary and only yields ids the text encoder can embed."""
    from transformers import AutoTokenizer

    fix = "copy tokenizer.json (or spiece.model), tokenizer_config.json and special_tokens_map.json from the original repo"
    # Without a vocabulary file transformers quietly builds an empty tokenizer; that is not loadable for us.
    if not any((folder / name).is_file() for name in _VOCAB_FILES):
        raise _fail(folder, "no tokenizer vocabulary (tokenizer.json or spiece.model)", fix)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # transformers raises many types for a broken tokenizer; any of them means unusable
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _fail(folder, f"the tokenizer does not load ({reason})", fix) from None
    vocab = (config.get("text_encoder") or {}).get("vocab_size")
    if vocab is not None and len(tokenizer) > vocab:
        raise _fail(folder, f"the tokenizer has {len(tokenizer)} tokens but the text encoder embeds {vocab}", fix)


def check_import_folder(folder: Path | str) -> CheckedFolder:
    """Everything mgen needs to load the folder, checked without reading tensor data."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise MgenError(f"{folder} is not a folder", "pass the folder that holds config.json and model.safetensors")
    config = _read_config(folder)
    shards = _weight_files(folder)
    stored = _stored_shapes(folder, shards)
    expected = _expected_shapes(folder)
    missing = sorted(name for name, (_, required) in expected.items() if required and name not in stored)
    if missing:
        raise _fail(
            folder,
            f"{len(missing)} tensors missing from the weights, e.g. {', '.join(missing[:_SHOWN])}",
            "the weights belong to another model or are incomplete",
        )
    wrong = [
        f"{n} {list(stored[n])} != {list(shape)}" for n, (shape, _) in expected.items() if n in stored and stored[n] != shape
    ]
    if wrong:
        raise _fail(
            folder,
            f"{len(wrong)} tensors have the wrong shape, e.g. {'; '.join(wrong[:_SHOWN])}",
            "config.json does not describe these weights",
        )
    _check_tokenizer(folder, config)
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and wanted_by_transformers(p.name))
    files = [f for f in files if not is_weight_file(f) or f in shards]
    return CheckedFolder(folder=folder, config=config, files=files)


def import_model(manifest: Manifest, source: Path | str, key: str, *, reporter: Reporter | None = None) -> ModelEntry:
    """Check `source`, copy it to <cache>/<key> atomically, register `key` and mark the copy ready."""
    reporter = reporter or NullReporter()
    if not _KEY.match(key):
        raise MgenError(f"--key {key!r} is not a plain name", "use letters, digits, '.', '_' or '-', e.g. --key my-musicgen")
    target = safe_child(manifest.root, key)
    if is_ready(target):
        raise MgenError(
            f"model key {key!r} already has a ready folder {target}", "pick another --key or delete that folder first"
        )
    reporter.phase("check", str(source))
    checked = check_import_folder(source)
    reporter.phase("copy", f"{len(checked.files)} files to {target}")
    sizes = {name: (checked.folder / name).stat().st_size for name in checked.files}
    copied = 0
    try:
        with staged_model_folder(manifest, key) as staging:
            for name, size in sizes.items():
                shutil.copyfile(checked.folder / name, staging / name)
                copied += size
                reporter.progress(Progress(task="copy", done=copied, total=sum(sizes.values()), unit="B"))
    except OSError as exc:
        raise MgenError(
            f"could not copy into {manifest.root}: {exc.strerror or exc}", "free some space or pass --cache-dir on a bigger disk"
        ) from None
    shape, caps = traits_from_config(checked.config)
    declared = manifest.entries.get(key)
    mismatch = shape_mismatch(declared, shape, checked.config) if declared is not None else None
    if mismatch:
        reporter.message(mismatch, "warning")
    entry = register_local_model(
        manifest,
        key,
        shape=shape,
        capabilities=caps,
        description=f"imported from {checked.folder}",
        marker={"imported_from": str(checked.folder)},
    )
    return entry
