"""Read a model folder's weights tensor by tensor, each straight to where a plan puts it.

`from_pretrained` builds the whole model on the host before anything moves to a GPU, so a GPU
plan needed the model's full size in RAM for a moment (large: 7-8 GiB where the plan keeps
1.7 GiB on the host). Here the model is built on the meta device, buffers too (the loader
computes those no file holds, such as MusicGen's sinusoidal positions, where they land), then
every tensor of the safetensors file(s) is read once into
its destination: GPU parts through a small host scratch buffer, the plan's RAM layers into one
exactly sized (page-locked) host block per layer, T5 and a CPU codec into host tensors of their
own dtype. Nothing of the model is ever whole on the host.

Why plain reads and not `safe_open(...).get_tensor`: safetensors memory-maps the file, and every
page a read touches counts in the process's RSS until the file is closed, so a load through it
peaks near the size of the file whatever becomes of the tensors. `readinto` from a file goes
through the page cache (reclaimable, never RSS) into the destination's own memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from musicgen_cli.errors import MgenError
from musicgen_cli.store.integrity import safetensors_header

# The safetensors format's dtype names (its documented header).
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
# Host bytes a converted or GPU-bound tensor passes through at a time: bounded, so that the
# largest tensor (large's 64 MiB fc1 in float32) costs no more transient RAM than a small one.
SCRATCH_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Stored:
    """Where one tensor's bytes are in a safetensors file."""

    path: Path
    offset: int
    nbytes: int
    dtype: torch.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Target:
    """Where a tensor goes: a device and dtype, or a view of a host block already in place."""

    device: torch.device
    dtype: torch.dtype
    view: torch.Tensor | None = None


_DAMAGED = "download or import the model again (mgen models)"


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors files: the shards its index names (confined to the folder), or
    the single file."""
    from musicgen_cli.store.cache import safe_child

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MgenError(f"{index} is damaged", _DAMAGED) from None
        return [safe_child(folder, str(name)) for name in sorted(names, key=str)]
    single = folder / "model.safetensors"
    if not single.is_file():
        raise MgenError(f"{folder} has no model.safetensors", _DAMAGED)
    return [single]


def stored_tensors(folder: Path) -> dict[str, Stored]:
    """Every tensor of the folder's files by its name in the file, from the files' headers
    (each checked against the file: a damaged header is refused before anything is read)."""
    found = {}
    for path in weight_files(folder):
        try:
            file_size = path.stat().st_size
            with open(path, "rb") as f:
                length, header = safetensors_header(f, file_size)
            data = file_size - 8 - length
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                start, end = info["data_offsets"]
                dtype, shape = _DTYPES[info["dtype"]], tuple(int(n) for n in info["shape"])
                if not 0 <= start <= end <= data or end - start != math.prod(shape) * dtype.itemsize:
                    raise ValueError(key)
                found[key] = Stored(path, 8 + length + start, end - start, dtype, shape)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise MgenError(f"{path} is damaged (its safetensors header does not describe its bytes)", _DAMAGED) from None
    return found


def model_names(model, stored: dict[str, Stored]) -> dict[str, str]:
    """File names mapped to the model's own names, renamed as `from_pretrained` renames old
    layouts (EnCodec's `weight_g`/`weight_v` before weight norm became a parametrization)."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightRenaming, rename_source_key

    wanted = model.state_dict(keep_vars=True)
    renamings = [t for t in get_model_conversion_mapping(model) if isinstance(t, WeightRenaming)]
    names = {}
    for key in stored:
        name = key if key in wanted else rename_source_key(key, renamings, [], model.base_model_prefix, wanted)[0]
        if name in wanted:
            names[key] = name
    return names


def _bytes_of(tensor: torch.Tensor):
    """A writable byte view of a contiguous host tensor's memory."""
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def _read_into(f, stored: Stored, out: torch.Tensor) -> None:
    f.seek(stored.offset)
    view = _bytes_of(out)
    done = 0
    while done < stored.nbytes:
        n = f.readinto(view[done:])
        if not n:
            raise MgenError(f"{stored.path} ends inside a tensor", _DAMAGED)
        done += n


def _read_through(f, stored: Stored, out: torch.Tensor, scratch: torch.Tensor) -> None:
    """Fill `out` (any device and dtype) from the file in scratch-sized runs of elements."""
    width = torch.empty((), dtype=stored.dtype).element_size()
    per_run = max(1, scratch.numel() // width)
    flat = out.view(-1)
    for start in range(0, flat.numel(), per_run):
        count = min(per_run, flat.numel() - start)
        run = scratch[: count * width].view(stored.dtype)
        _read_into(f, Stored(stored.path, stored.offset + start * width, count * width, stored.dtype, (count,)), run)
        # A synchronous copy: the scratch is refilled only once this run has left it.
        flat[start : start + count].copy_(run)


def stream_weights(model, folder: Path, target_of: Callable[[str, torch.Tensor], Target | None],
                   stored: dict[str, Stored] | None = None) -> set[str]:
    """Read every tensor of `folder` (headers: `stored`) the model knows into place
    (`target_of(name, skeleton)`; None: leave that one as it is); returns the names read."""
    stored = stored or stored_tensors(folder)
    names = model_names(model, stored)
    scratch = torch.empty(SCRATCH_BYTES, dtype=torch.uint8)
    read = set()
    for path, keys in _by_file(stored, names):
        # Unbuffered: readinto fills the destination directly, with no copy in a Python buffer.
        with open(path, "rb", buffering=0) as f:
            for key in keys:
                name = names[key]
                module_name, _, leaf = name.rpartition(".")
                module = model.get_submodule(module_name)
                skeleton = module._parameters.get(leaf)
                if skeleton is None:
                    skeleton = module._buffers[leaf]
                if tuple(skeleton.shape) != stored[key].shape:
                    raise MgenError(f"{folder.name}: {key} is {list(stored[key].shape)} in the file, {list(skeleton.shape)} in the "
                                    "model its config.json describes", _DAMAGED)
                target = target_of(name, skeleton)
                if target is None:
                    continue
                value = _load(f, stored[key], target, scratch)
                if skeleton.is_meta or value.data_ptr() != skeleton.data_ptr():  # else it was read in place
                    _put(module, leaf, skeleton, value)
                read.add(name)
    return read


def _by_file(stored: dict[str, Stored], names: dict[str, str]) -> Iterator[tuple[Path, list[str]]]:
    """Keys file by file, in the order their bytes lie: one sequential pass over each file."""
    files: dict[Path, list[str]] = {}
    for key in names:
        files.setdefault(stored[key].path, []).append(key)
    for path, keys in files.items():
        yield path, sorted(keys, key=lambda k: stored[k].offset)


def _load(f, stored: Stored, target: Target, scratch: torch.Tensor) -> torch.Tensor:
    out = target.view
    if out is None:
        out = torch.empty(stored.shape, dtype=target.dtype, device=target.device)
    if out.device.type == "cpu" and out.dtype == stored.dtype:
        _read_into(f, stored, out)
    else:
        _read_through(f, stored, out, scratch)
    return out


def _put(module, leaf: str, skeleton: torch.Tensor, value: torch.Tensor) -> None:
    if leaf in module._parameters:
        module._parameters[leaf] = torch.nn.Parameter(value, requires_grad=skeleton.requires_grad)
    else:
        module._buffers[leaf] = value


def empty_model(config) -> Any:
    """The model of `config` with every parameter and buffer on the meta device."""
    from accelerate import init_empty_weights
    from transformers.initialization import no_init_weights

    from musicgen_cli.arch import model_class, quiet_transformers

    with quiet_transformers(), init_empty_weights(include_buffers=True), no_init_weights():
        return model_class(config)(config)
