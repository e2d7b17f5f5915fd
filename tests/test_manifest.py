import json

import pytest

from musicgen_cli.errors import MgenError, ModelNotFound
from musicgen_cli.store.cache import safe_child
from musicgen_cli.store.manifest import Capabilities, ModelEntry, load_manifest


def test_shipped_manifest_has_the_released_models(cache_dir):
    m = load_manifest()
    for key in ("small", "medium", "large", "melody", "stereo-small", "stereo-medium", "stereo-large", "stereo-melody", "tiny-random"):
        assert key in m.entries
    assert m.get("facebook/musicgen-large").key == "large"
    assert m.entries["stereo-large"].capabilities.channels == 2
    assert m.entries["tiny-random"].random_weights
    assert m.folder(m.entries["small"]) == cache_dir / "musicgen-small"


def test_unknown_key_suggests_the_closest(cache_dir):
    with pytest.raises(ModelNotFound) as info:
        load_manifest().get("smal")
    assert "did you mean 'small'" in str(info.value)
    assert "medium" in str(info.value)


def test_unlisted_repo_id_gets_a_derived_entry(cache_dir):
    entry = load_manifest().get("someone/MusicGen-Finetune")
    assert entry.key == "musicgen-finetune"
    assert entry.folder == "someone--MusicGen-Finetune"


def test_broken_json_names_line_and_column(tmp_path, cache_dir):
    bad = tmp_path / "m.json"
    bad.write_text('{\n  "models": {\n    "x": {,}\n  }\n}\n')
    with pytest.raises(MgenError) as info:
        load_manifest(path=bad)
    assert f"{bad}:3:11" in str(info.value)


def test_folder_may_not_escape_the_cache(tmp_path, cache_dir):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"models": {"x": {"repo_id": "a/b", "folder": "../../etc"}}}))
    with pytest.raises(MgenError, match="escapes"):
        load_manifest(path=bad)
    with pytest.raises(MgenError):
        safe_child(cache_dir, "/abs")


def test_user_entries_survive_and_override(cache_dir):
    m = load_manifest()
    m.register(ModelEntry(key="mine", folder="mine", repo_id="me/mine", capabilities=Capabilities(stereo=True, channels=2)))
    again = load_manifest()
    assert again.entries["mine"].source == "user"
    assert again.entries["mine"].capabilities.stereo
    assert (cache_dir / "manifest.user.json").exists()


def test_the_shipped_manifest_is_the_top_level_file(cache_dir):
    from musicgen_cli.store.manifest import SHIPPED_MANIFEST
    from musicgen_cli.store.cache import PROJECT_ROOT

    assert SHIPPED_MANIFEST == PROJECT_ROOT / "manifest.json"  # this checkout reads its source
    shipped = json.loads(SHIPPED_MANIFEST.read_text())["models"]
    assert {key for key, e in load_manifest().entries.items() if e.source == "shipped"} == set(shipped)


def test_a_hand_written_manifest_in_the_config_folder_is_listed(cache_dir, tmp_path, monkeypatch, capsys):
    from cli_run import run_main

    config = tmp_path / "config"
    config.mkdir()
    (config / "manifest.json").write_text(json.dumps({"version": 1, "models": {
        "my-finetune": {"folder": "my-finetune", "repo_id": "someone/musicgen-finetune", "shape": "small"},
        "small": {"folder": "musicgen-small", "repo_id": "facebook/musicgen-small", "revision": "abc123", "shape": "small"},
    }}))
    monkeypatch.setenv("MGEN_CONFIG_DIR", str(config))
    m = load_manifest()
    assert m.entries["my-finetune"].source == "user" and m.entries["small"].revision == "abc123"
    result = run_main(capsys, "models", "--json")
    rows = {row["key"]: row for row in json.loads(result.stdout)}
    assert rows["my-finetune"]["repo_id"] == "someone/musicgen-finetune" and "medium" in rows
