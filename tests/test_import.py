"""`mgen import`: a loadable MusicGen folder is copied in and registered; a broken one is refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_run import one_line_error, run_main

from musicgen_cli.store.cache import READY_MARKER, read_marker
from musicgen_cli.store.manifest import load_manifest


def run_mgen(capsys, *args: str) -> tuple[int, str, str]:
    result = run_main(capsys, *args)
    return result.returncode, result.stdout, result.stderr


def rejected(capsys, *args: str) -> str:
    return one_line_error(run_main(capsys, *args))


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
    # mgen's own bookkeeping files in the source (a cached weights digest) are not model files
    assert copied == {p.name for p in source.iterdir() if not p.name.startswith(".mgen")} - {"pytorch_model.bin"}
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


def _edit_config(source: Path, change) -> None:
    config = json.loads((source / "config.json").read_text())
    change(config)
    (source / "config.json").write_text(json.dumps(config))


# case -> (how to break a copy of the tiny mono folder, what the error line must name)
BROKEN = {
    "missing weights": (lambda src, copy_of: (src / "model.safetensors").unlink(), "no model.safetensors"),
    "wrong shapes": (
        lambda src, copy_of: _edit_config(src, lambda c: c["decoder"].update(hidden_size=48)),  # saved: 32 wide
        "have the wrong shape, e.g. decoder.",
    ),
    "another model's weights": (
        lambda src, copy_of: shutil.copyfile(copy_of("melody") / "model.safetensors", src / "model.safetensors"),
        "missing from the weights",
    ),
    "not a musicgen config": (
        lambda src, copy_of: (src / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 16})),
        "model_type 't5'",
    ),
    "unparsable config": (lambda src, copy_of: (src / "config.json").write_text("{ not json"), "config.json line 1"),
    "no tokenizer vocabulary": (lambda src, copy_of: (src / "tokenizer.json").unlink(), "no tokenizer vocabulary"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_folder_rejected_naming_the_problem(capsys, cache_dir, copy_of, case):
    source = copy_of()
    breaker, expected = BROKEN[case]
    breaker(source, copy_of)

    line = rejected(capsys, "import", str(source), "--key", "broken")

    assert expected in line
    assert not (cache_dir / "broken").exists() and not list(cache_dir.glob(".import-*"))
    assert "broken" not in load_manifest(cache_dir).entries


def test_missing_folder_rejected(capsys, cache_dir, tmp_path):
    assert "is not a folder" in rejected(capsys, "import", str(tmp_path / "nowhere"), "--key", "x")


@pytest.mark.parametrize("key", ["../escape", "owner/name", ".hidden"])
def test_key_that_is_not_a_plain_name_rejected(capsys, cache_dir, tmp_path, key):
    assert "is not a plain name" in rejected(capsys, "import", str(tmp_path), "--key", key)
    assert not list(cache_dir.iterdir())
