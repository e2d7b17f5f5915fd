"""Shared fixtures: tiny random-weight models in the facebook repo layout, built once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_main
from fake_hub import AUDIOCRAFT, BIG, SMALL, FakeHub, FakeHubServer, FakeRepo

from musicgen_cli.testing import ModelSpec, write_model_folder

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The developer's own config folder (a hand-written manifest.json) stays out of the tests.
os.environ.setdefault("MGEN_CONFIG_DIR", tempfile.mkdtemp(prefix="mgen-config-"))


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


def _written_here() -> set[str]:
    """What the checkout's default output and cache folders hold."""
    return {str(p.relative_to(ROOT)) for folder in ("output", "model-cache") if (ROOT / folder).is_dir() for p in (ROOT / folder).iterdir()}


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_checkout():
    """Tests write under tmp_path only: a new entry in output/ or model-cache/ fails the session."""
    before = _written_here()
    yield
    new = _written_here() - before
    assert not new, f"tests wrote into the working directory: {sorted(new)}"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core box they only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """The offline tokenizer of the tiny models."""
    from transformers import AutoTokenizer

    from musicgen_cli.testing import build_tokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder)


def _attention_timing(monkeypatch, bf16_faster: bool) -> None:
    import torch

    from musicgen_cli.decode import fastloop

    monkeypatch.setattr(fastloop, "_ATTENTION_DTYPES", {})
    monkeypatch.setattr(fastloop, "attention_seconds", lambda kind, *a, **k: 1.0 if (kind == torch.bfloat16) == bf16_faster else 2.0)


@pytest.fixture
def float32_cache(monkeypatch):
    """As on a CPU where bf16 SDPA is the slower (no AMX): every mode keeps a float32 KV cache, as
    transformers' forward does, so both engines compute alike."""
    _attention_timing(monkeypatch, bf16_faster=False)


@pytest.fixture
def bf16_attends_faster(monkeypatch):
    """As on a CPU where bf16 SDPA wins (AMX): the reduced modes keep a bf16 KV cache."""
    _attention_timing(monkeypatch, bf16_faster=True)


# -- a fake Hugging Face hub serving the tiny model (test_hub, test_models_manage) ------------------


@pytest.fixture(scope="module")
def repo_folder(tiny_models, tmp_path_factory) -> Path:
    """The tiny mono model laid out like facebook/musicgen-small, audiocraft checkpoints included."""
    folder = tmp_path_factory.mktemp("repo") / "musicgen-small"
    shutil.copytree(tiny_models["mono"], folder)
    for name, data in AUDIOCRAFT.items():
        (folder / name).write_bytes(data)
    (folder / "pytorch_model.bin").write_bytes(b"not needed by mgen")
    return folder


@pytest.fixture(scope="module")
def big_repo_folder(repo_folder, tmp_path_factory) -> Path:
    """The same repo with a 12 MiB weights file: the hub client writes in 10 MiB chunks, so a cut keeps one."""
    from safetensors.numpy import save_file

    folder = tmp_path_factory.mktemp("repo") / "musicgen-big"
    shutil.copytree(repo_folder, folder)
    save_file({"blob": np.random.default_rng(0).integers(0, 255, 12 * 2**20, dtype=np.uint8)}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture()
def hub(repo_folder, big_repo_folder):
    fake = FakeHub()
    fake.add(FakeRepo.from_folder(SMALL, repo_folder))
    fake.add(FakeRepo.from_folder(BIG, big_repo_folder))
    fake.add(FakeRepo.from_folder("acme/musicgen-tiny", repo_folder))
    fake.add(FakeRepo.from_folder("acme/gated-musicgen", repo_folder, gated=True))
    with FakeHubServer(fake) as running:
        yield running


@pytest.fixture()
def in_process_hub(hub, monkeypatch, tmp_path):
    """Point the already-imported hub client at the fake hub (it reads HF_ENDPOINT at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    # The Hugging Face cache a download may reuse: a fresh one per test, never the user's.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "AUDIOCRAFT_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return hub


@pytest.fixture()
def run(in_process_hub, capsys, monkeypatch):
    """`mgen ARGS` in this process against the fake hub, with extra environment for that run only."""

    def invoke(*args: str, **env: str):
        with monkeypatch.context() as scoped:
            for name, value in env.items():
                scoped.setenv(name, value)
            return run_main(capsys, *args)

    return invoke
