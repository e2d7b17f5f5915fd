"""Shared fixtures: tiny random-weight models in the facebook repo layout, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from musicgen_cli.testing import ModelSpec, write_model_folder

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Folders of the tiny mono, stereo and melody models."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {v: write_model_folder(root / v, ModelSpec(variant=v)) for v in ("mono", "stereo", "melody")}


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch) -> Path:
    """An empty model cache, also exported as MGEN_CACHE_DIR for CLI runs."""
    root = tmp_path / "model-cache"
    root.mkdir()
    monkeypatch.setenv("MGEN_CACHE_DIR", str(root))
    return root
