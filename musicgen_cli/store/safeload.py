"""Read torch checkpoint files without running code from them, and read the configs inside.

`torch.load(weights_only=True)` refuses every pickled class it does not know. audiocraft's
released files keep their Hydra config as an omegaconf `DictConfig` inside the pickle; rather
than trusting omegaconf's classes (or needing omegaconf at all), their names are mapped to inert
stand-ins that only store the pickled state, which `plain_config` turns into dicts and lists.
Anything else that is pickled code is refused with the name of the offending global.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from musicgen_cli.errors import MgenError

_NODE_TYPES = ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode", "PathNode")
_INTERPOLATION = re.compile(r"^\$\{([\w.]+)\}$")


class _Pickled:
    """Holds the pickled attributes of an omegaconf object; has no behaviour of its own."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _DictConfig(_Pickled):
    pass


class _ListConfig(_Pickled):
    pass


class _ValueNode(_Pickled):
    pass


class _Metadata(_Pickled):
    pass


class _AnyType:
    """Stands in for typing.Any, which omegaconf records as a node's declared type."""


def _stand_ins() -> list:
    import collections

    names = [
        (_DictConfig, "omegaconf.dictconfig.DictConfig"),
        (_ListConfig, "omegaconf.listconfig.ListConfig"),
        (_Metadata, "omegaconf.base.Metadata"),
        (_Metadata, "omegaconf.base.ContainerMetadata"),
        (_AnyType, "typing.Any"),
    ]
    names += [(_ValueNode, f"omegaconf.nodes.{node}") for node in _NODE_TYPES]
    return names + [collections.defaultdict, dict, list, int, float, bool, str]


_NOT_CHECKPOINT = "give audiocraft's state_dict.bin / compression_state_dict.bin; if copied, copy again and compare sizes"


def load_torch_file(path: Path | str) -> Any:
    """torch.load with weights_only=True; bad files become one clear MgenError."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise MgenError(f"{path} does not exist", "check the path")
    is_zip = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(_stand_ins()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on odd pickle protocols, for bytes that are no checkpoint
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if not found:
            raise MgenError(f"{path.name} is truncated or not a torch checkpoint (it does not unpickle)", _NOT_CHECKPOINT) from None
        name = found.group(1)
        raise MgenError(
            f"{path.name} contains pickled code ({name}); mgen never runs code from checkpoint files",
            "re-save it with plain tensors and dicts, e.g. torch.save({'best_state': model.state_dict(), "
            "'xp.cfg': OmegaConf.to_container(cfg)}, path)",
        ) from None
    except Exception as exc:  # random bytes fail the unpickler in any of a dozen ways (KeyError, IndexError...)
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise MgenError(f"{path.name} is truncated or not a torch checkpoint ({detail})", _NOT_CHECKPOINT) from None


def plain_config(cfg: Any) -> dict:
    """A checkpoint's config (dict, YAML text or omegaconf stand-in) as plain dicts and lists."""
    if cfg is None:
        return {}
    if isinstance(cfg, str):
        import yaml

        try:
            cfg = yaml.safe_load(cfg)
        except yaml.YAMLError as exc:
            raise MgenError(f"the checkpoint's xp.cfg is not valid YAML ({exc})", "re-export the checkpoint") from None
    value = _plain(cfg)
    if not isinstance(value, dict):
        raise MgenError("the checkpoint's xp.cfg is not a mapping", "re-export the checkpoint with its Hydra config")
    return value


def _plain(obj: Any) -> Any:
    if isinstance(obj, (_DictConfig, _ListConfig, _ValueNode)):
        obj = obj.__dict__.get("_content", obj.__dict__.get("_val"))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, _Pickled):
        return None
    return obj


def config_value(cfg: dict, dotted: str, default: Any = None) -> Any:
    """cfg["a"]["b"] for "a.b", following `${other.key}` interpolations as omegaconf would."""
    node = _lookup(cfg, dotted, default)
    seen = {dotted}
    while isinstance(node, str) and (ref := _INTERPOLATION.match(node)) and ref.group(1) not in seen:
        seen.add(ref.group(1))
        node = _lookup(cfg, ref.group(1), default)
    return node


def _lookup(cfg: dict, dotted: str, default: Any) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
