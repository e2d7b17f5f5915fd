"""`mgen import`: a loadable MusicGen folder is copied in and registered; a broken one is refused by name."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from musicgen_cli import cli
from musicgen_cli.cache import READY_MARKER, read_marker
from musicgen_cli.manifest import load_manifest


def run_mgen(capsys, *args: str) -> tuple[int, str, str]:
    """The console-script entry in-process (transformers is imported once per test session)."""
    argv = sys.argv
    sys.argv = ["mgen", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return code, out.out, out.err


def rejected(capsys, *args: str) -> str:
    code, _, err = run_mgen(capsys, *args)
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


@pytest.fixture()
def copy_of(tiny_models, tmp_path):
    def make(variant: str = "mono") -> Path:
        return Path(shutil.copytree(tiny_models[variant], tmp_path / f"src-{variant}"))

    return make


@pytest.mark.parametrize("variant", ["mono", "melody"])
def test_import_copies_registers_and_marks_ready(capsys, cache_dir, copy_of, variant):
    source = copy_of(variant)
    (source / "pytorch_model.bin").write_bytes(b"a duplicate mgen does not read")

    code, out, err = run_mgen(capsys, "import", str(source), "--key", f"my-{variant}")

    assert code == 0, err
    target = cache_dir / f"my-{variant}"
    copied = {p.name for p in target.iterdir()} - {READY_MARKER}
    assert copied == {p.name for p in source.iterdir()} - {"pytorch_model.bin"}
    for name in copied:
        assert (target / name).read_bytes() == (source / name).read_bytes()
    assert read_marker(target)["imported_from"] == str(source)
    entry = load_manifest(cache_dir).get(f"my-{variant}")
    assert entry.source == "user" and entry.repo_id is None and entry.shape == "tiny"
    assert entry.capabilities.melody == (variant == "melody")
    assert not list(cache_dir.glob(".import-*"))

    code, out, _ = run_mgen(capsys, "models", "--json")
    row = {r["key"]: r for r in json.loads(out)}[f"my-{variant}"]
    assert row["cached"] and not row["random_weights"]


def test_import_refuses_a_key_that_is_already_ready(capsys, cache_dir, copy_of):
    source = copy_of()
    assert run_mgen(capsys, "import", str(source), "--key", "mine")[0] == 0
    assert "already has a ready folder" in rejected(capsys, "import", str(source), "--key", "mine")


def test_missing_weights_rejected(capsys, cache_dir, copy_of):
    source = copy_of()
    (source / "model.safetensors").unlink()

    line = rejected(capsys, "import", str(source), "--key", "broken")

    assert "no model.safetensors" in line
    assert not (cache_dir / "broken").exists()
    assert "broken" not in load_manifest(cache_dir).entries


def test_weights_of_other_shapes_rejected(capsys, cache_dir, copy_of):
    source = copy_of()
    config = json.loads((source / "config.json").read_text())
    config["decoder"]["hidden_size"] = 48  # the saved decoder is 32 wide
    (source / "config.json").write_text(json.dumps(config))

    line = rejected(capsys, "import", str(source), "--key", "broken")

    assert "wrong shape" in line and "decoder" in line
    assert not (cache_dir / "broken").exists()


def test_weights_of_another_model_rejected(capsys, cache_dir, copy_of):
    source = copy_of()
    shutil.copyfile(copy_of("melody") / "model.safetensors", source / "model.safetensors")

    line = rejected(capsys, "import", str(source), "--key", "broken")

    assert "missing from the weights" in line or "wrong shape" in line


def test_non_musicgen_config_rejected(capsys, cache_dir, copy_of):
    source = copy_of()
    (source / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 16}))

    line = rejected(capsys, "import", str(source), "--key", "broken")

    assert "model_type 't5'" in line


def test_unparsable_config_rejected(capsys, cache_dir, copy_of):
    source = copy_of()
    (source / "config.json").write_text("{ not json")

    assert "config.json line 1" in rejected(capsys, "import", str(source), "--key", "broken")


def test_broken_tokenizer_rejected(capsys, cache_dir, copy_of):
    source = copy_of()
    (source / "tokenizer.json").unlink()

    line = rejected(capsys, "import", str(source), "--key", "broken")

    assert "no tokenizer vocabulary" in line
    assert not (cache_dir / "broken").exists()


def test_missing_folder_rejected(capsys, cache_dir, tmp_path):
    assert "is not a folder" in rejected(capsys, "import", str(tmp_path / "nowhere"), "--key", "x")
