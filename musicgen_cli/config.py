"""Every environment variable mgen honours, read here and nowhere else.

Read at call time, not import time, so a long-lived process (tests, the studio) sees changes.
HF_HOME, HF_TOKEN and HF_ENDPOINT are honoured by huggingface_hub itself; mgen never reads
the token, so it can never print it.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path | None:
    """MGEN_CACHE_DIR: where models live, overriding the default."""
    return _path("MGEN_CACHE_DIR")


def data_dir() -> Path | None:
    """MGEN_DATA_DIR: where mgen keeps its own state (the studio's line history)."""
    return _path("MGEN_DATA_DIR")


def audiocraft_cache_dir() -> Path | None:
    """AUDIOCRAFT_CACHE_DIR: audiocraft's own cache, where --include-audiocraft files go."""
    return _path("AUDIOCRAFT_CACHE_DIR")


def config_dir() -> Path | None:
    """MGEN_CONFIG_DIR: where the user's own manifest.json is read (default: the user config folder)."""
    return _path("MGEN_CONFIG_DIR")


def manifest_path() -> Path | None:
    """MGEN_MANIFEST: a manifest to use instead of the shipped one."""
    return _path("MGEN_MANIFEST")


def token() -> str | None:
    """MGEN_TOKEN: the bearer token `mgen serve` asks for (and `generate --server` sends); never printed."""
    return os.environ.get("MGEN_TOKEN", "").strip() or None


def server() -> str | None:
    """MGEN_SERVER: the URL of a running `mgen serve` that `mgen generate` sends its jobs to."""
    return os.environ.get("MGEN_SERVER", "").strip() or None


def offline() -> bool:
    """HF_HUB_OFFLINE=1: never touch the network."""
    return _flag("HF_HUB_OFFLINE")


def force_cpu_codec() -> bool:
    """FORCE_CPU_COMP=1: keep EnCodec (the compression model) on the CPU."""
    return os.environ.get("FORCE_CPU_COMP", "").strip() == "1"


def apply_proposed() -> bool:
    """APPLY_PROPOSED=1: apply fuzzy key matches when importing, not only propose them."""
    return _flag("APPLY_PROPOSED")


def debug() -> bool:
    """MGEN_DEBUG=1: show tracebacks instead of one-line errors."""
    return _flag("MGEN_DEBUG")


# What a distributed launcher (torchrun, `accelerate launch`) sets for each process it starts.
_RANK_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE")


def _launched() -> bool:
    """A launcher started this process: it always sets the rendezvous address beside the ranks
    (torchrun also its run id); rank variables alone are leftovers of some other job."""
    return bool(os.environ.get("TORCHELASTIC_RUN_ID")) or bool(os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT"))


def drop_stray_rank_vars() -> list[str]:
    """Remove rank variables no launcher set (a shell left over from a distributed job), so
    neither mgen nor accelerate takes this process for one rank of several; returns their names."""
    if _launched():
        return []
    stray = [name for name in _RANK_VARS if name in os.environ]
    for name in stray:
        del os.environ[name]
    return stray


def under_launcher() -> bool:
    """Started by `accelerate launch` (or torchrun): one process of several."""
    return _launched() and ("LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def quiet_transformers_env() -> None:
    """transformers reads its verbosity at import: set before the first import."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
