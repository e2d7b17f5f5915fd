# ruff: noqa: F811  (pytest fixtures imported from test_hub are redefined as parameters)
"""`mgen models list|verify|rm|prune|du`, `mgen import-hf-cache`, Hugging Face cache reuse and the
shape check, against the local hub server (its request log says what was fetched)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from cli_run import one_line_error
from fake_hub import SMALL, TRANSFORMERS_FILES, FakeHub, mgen

from musicgen_cli.store.cache import READY_MARKER, read_marker
from musicgen_cli.store.lease import hold_model
from musicgen_cli.store.manifest import USER_MANIFEST_NAME, load_manifest
from musicgen_cli.store.models import staged_model_folder


def as_json(result) -> object:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def statuses(result) -> dict[str, str]:
    (check,) = as_json(result)
    return {f["name"]: f["status"] for f in check["files"]}


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def hf_cache_fill(hub: FakeHub, hf_hub: Path, repo_id: str = SMALL) -> dict[str, Path]:
    """The standard Hugging Face cache as transformers would leave it, written by huggingface_hub itself."""
    from huggingface_hub import hf_hub_download

    return {
        name: Path(hf_hub_download(repo_id, name, cache_dir=hf_hub, endpoint=hub.url)) for name in sorted(TRANSFORMERS_FILES)
    }


def test_verify_finds_a_flipped_byte_and_repair_fetches_only_that_file(hub, run, cache_dir, repo_folder):
    assert run("download", "small").returncode == 0
    weights = cache_dir / "musicgen-small" / "model.safetensors"
    flip_byte(weights, weights.stat().st_size // 2)

    found = run("models", "verify", "small", "--json")

    assert found.returncode == 1
    assert statuses(found) == {name: "corrupt" if name == "model.safetensors" else "good" for name in TRANSFORMERS_FILES}

    hub.log.clear()
    repaired = run("models", "verify", "small", "--repair", "--json")

    assert repaired.returncode == 0, repaired.stderr
    assert as_json(repaired)[0]["ok"] is True
    assert [r[1].rsplit("/", 1)[1] for r in hub.requests("GET", "/resolve/")] == ["model.safetensors"]
    assert not hub.requests("GET", "/api/")  # the recorded checksums are enough: no metadata request
    assert weights.read_bytes() == (repo_folder / "model.safetensors").read_bytes()
    assert (cache_dir / "musicgen-small" / READY_MARKER).exists()
    assert run("models", "verify", "--all").returncode == 0


def test_verify_reports_a_missing_file_and_an_uncached_model(hub, run, cache_dir):
    assert run("download", "small").returncode == 0
    (cache_dir / "musicgen-small" / "tokenizer.json").unlink()

    missing = run("models", "verify", "small", "--json")
    assert missing.returncode == 1 and statuses(missing)["tokenizer.json"] == "missing"

    uncached = run("models", "verify", "medium", "--json")
    assert uncached.returncode == 1 and as_json(uncached)[0]["problem"] == "not cached"
    assert "--all" in one_line_error(run("models", "verify"))


def test_imported_and_built_models_record_checksums_verify_checks(run, cache_dir, tiny_models):
    assert run("import", str(tiny_models["stereo"]), "--key", "mine").returncode == 0
    record = read_marker(cache_dir / "mine")["files"]
    source = (tiny_models["stereo"] / "model.safetensors").read_bytes()
    assert record["model.safetensors"]["sha256"] == hashlib.sha256(source).hexdigest()
    flip_byte(cache_dir / "mine" / "config.json", 5)

    assert statuses(run("models", "verify", "mine", "--json"))["config.json"] == "corrupt"
    fixed = run("models", "verify", "mine", "--repair", "--json")  # copied again from where it was imported from
    assert fixed.returncode == 0 and (cache_dir / "mine" / "config.json").read_bytes() == (tiny_models["stereo"] / "config.json").read_bytes()


def test_rm_removes_folder_and_user_entry_shipped_keys_stay_listed(hub, run, cache_dir):
    assert run("download", "small").returncode == 0
    assert run("download", "acme/musicgen-tiny").returncode == 0
    assert run("download", "tiny-random").returncode == 0

    removed = run("models", "rm", "small", "musicgen-tiny", "--yes", "--json")

    assert removed.returncode == 0, removed.stderr
    by_key = {r["key"]: r for r in as_json(removed)}
    assert by_key["small"]["still_listed"] and not by_key["musicgen-tiny"]["still_listed"]
    assert by_key["musicgen-tiny"]["bytes_freed"] > 0
    assert not (cache_dir / "musicgen-small").exists() and not (cache_dir / "acme--musicgen-tiny").exists()
    assert (cache_dir / "tiny-random" / READY_MARKER).exists()  # untouched
    user = json.loads((cache_dir / USER_MANIFEST_NAME).read_text())["models"]
    assert "musicgen-tiny" not in user and "small" not in user
    listing = {row["key"]: row for row in as_json(run("models", "list", "--json"))}
    assert "musicgen-tiny" not in listing
    assert listing["small"]["cached"] is False and listing["small"]["shape"] == "small"  # the shipped entry again
    assert "unknown model key" in one_line_error(run("models", "rm", "no-such-model", "--yes"))


def test_rm_refuses_while_a_generation_holds_the_model(run, cache_dir):
    assert run("download", "tiny-random").returncode == 0
    folder = cache_dir / "tiny-random"
    with hold_model(folder):  # what engine.load_model keeps while a MusicGen is alive
        line = one_line_error(run("models", "rm", "tiny-random", "--yes"))
        assert "in use by a running generation" in line
        assert (folder / READY_MARKER).exists()
    assert run("models", "rm", "tiny-random", "--yes").returncode == 0
    assert not folder.exists()


def test_a_loaded_model_holds_its_lease_until_released(run, cache_dir):
    import gc

    from musicgen_cli.engine.musicgen import load_model

    mg = load_model("tiny-random", cache_dir=cache_dir)
    assert run("download", "tiny-random-stereo").returncode == 0

    line = one_line_error(run("models", "rm", "tiny-random-stereo", "tiny-random", "--yes"))

    assert "tiny-random in use" in line and "nothing removed" in line
    assert (cache_dir / "tiny-random-stereo" / READY_MARKER).exists()  # all or nothing
    del mg
    gc.collect()
    assert run("models", "rm", "tiny-random", "--yes").returncode == 0


def test_rm_without_yes_off_a_terminal_asks_for_it(run, cache_dir):
    assert run("download", "tiny-random").returncode == 0
    assert "--yes" in one_line_error(run("models", "rm", "tiny-random"))
    assert (cache_dir / "tiny-random" / READY_MARKER).exists()


def test_prune_removes_exactly_the_leftovers(hub, run, cache_dir):
    from huggingface_hub.utils import WeakFileLock

    assert run("download", "small").returncode == 0
    small = cache_dir / "musicgen-small"
    stale_partial = small / ".model.safetensors.0123456789abcdef.incomplete"
    stale_partial.write_bytes(b"x" * 1000)
    assert (cache_dir / ".musicgen-small.lock").exists()  # left by the download: stale now
    interrupted = cache_dir / "musicgen-medium"  # a known model's unfinished download
    interrupted.mkdir()
    (interrupted / "config.json").write_text("{}")
    orphan = cache_dir / "leftover-folder"
    orphan.mkdir()
    (orphan / "junk.bin").write_bytes(b"j" * 300)
    kept_ready = cache_dir / "from-another-manifest"
    kept_ready.mkdir()
    (kept_ready / READY_MARKER).write_text("{}")
    abandoned = cache_dir / ".import-gone.abc123"
    abandoned.mkdir()
    (abandoned / "model.safetensors").write_bytes(b"s" * 500)
    manifest = load_manifest(cache_dir)
    with WeakFileLock(cache_dir / ".busy-model.lock"), staged_model_folder(manifest, "running") as staging:
        (staging / "model.safetensors").write_bytes(b"r" * 200)
        expected = {
            ("partial", str(stale_partial)),
            ("lock", str(cache_dir / ".musicgen-small.lock")),
            ("partial", str(interrupted)),
            ("orphan", str(orphan)),
            ("staging", str(abandoned)),
        }

        dry = as_json(run("models", "prune", "--dry-run", "--json"))
        assert {(i["kind"], i["path"]) for i in dry["items"]} == expected
        assert stale_partial.exists() and orphan.exists() and abandoned.exists()

        pruned = as_json(run("models", "prune", "--json"))

        assert {(i["kind"], i["path"]) for i in pruned["items"]} == expected
        assert pruned["bytes_freed"] == 1000 + 2 + 300 + 500  # lock files are empty
        for _, path in expected:
            assert not Path(path).exists()
        assert staging.exists() and (cache_dir / ".busy-model.lock").exists() and kept_ready.exists()
        assert (small / READY_MARKER).exists() and (small / "model.safetensors").exists()
    # Released now: the lock is stale, and the finished staging became a folder no entry names.
    after = as_json(run("models", "prune", "--dry-run", "--json"))["items"]
    assert {(i["kind"], Path(i["path"]).name) for i in after} == {("lock", ".busy-model.lock"), ("orphan", "running")}


def test_download_takes_every_file_from_a_prefilled_hf_cache(hub, cache_dir, repo_folder):
    hf_home = cache_dir.parent / "hf-home"  # what mgen() exports as HF_HOME
    blobs = hf_cache_fill(hub, hf_home / "hub")
    hub.log.clear()

    result = mgen(cache_dir, hub.url, "download", "small")

    assert result.returncode == 0, result.stderr
    assert not hub.requests("GET", "/resolve/")  # not one byte of a file came from the hub
    total = sum((repo_folder / name).stat().st_size for name in TRANSFORMERS_FILES)
    assert f"{total / 1e6:,.1f} MB of {total / 1e6:,.1f} MB (8 files) taken from the Hugging Face cache" in result.stdout
    folder = cache_dir / "musicgen-small"
    assert read_marker(folder)["from_hf_cache"] == total
    for name, path in blobs.items():
        assert os.stat(folder / name).st_ino == path.resolve().stat().st_ino  # hard-linked, not copied
    print(f"\nbytes saved by HF cache reuse: {total}")


def test_a_damaged_hf_cache_file_is_fetched_from_the_hub(hub, run, cache_dir, tmp_path):
    blobs = hf_cache_fill(hub, tmp_path / "hf-home" / "hub")  # in_process_hub points the hub client here
    flip_byte(blobs["model.safetensors"].resolve(), 100)
    hub.log.clear()

    result = run("download", "small")

    assert result.returncode == 0, result.stderr
    assert [r[1].rsplit("/", 1)[1] for r in hub.requests("GET", "/resolve/")] == ["model.safetensors"]
    assert "(7 files) taken from the Hugging Face cache" in result.stdout


def test_import_hf_cache_registers_musicgen_repos_without_the_hub(hub, run, cache_dir, tmp_path):
    hf_cache_fill(hub, tmp_path / "hf-home" / "hub")
    hf_cache_fill(hub, tmp_path / "hf-home" / "hub", "acme/musicgen-tiny")
    hub.log.clear()

    listed = as_json(run("import-hf-cache", "--dry-run", "--json", HF_HUB_OFFLINE="1"))
    assert {(a["repo_id"], a["status"]) for a in listed} == {(SMALL, "would register"), ("acme/musicgen-tiny", "would register")}
    adopted = run("import-hf-cache", "--json", HF_HUB_OFFLINE="1")

    assert adopted.returncode == 0, adopted.stderr
    assert {(a["repo_id"], a["key"], a["status"]) for a in as_json(adopted)} == {
        (SMALL, "small", "registered"),
        ("acme/musicgen-tiny", "musicgen-tiny", "registered"),
    }
    assert not hub.log
    manifest = load_manifest(cache_dir)
    assert manifest.is_cached(manifest.get("small")) and manifest.is_cached(manifest.get("musicgen-tiny"))
    assert run("models", "verify", "--all").returncode == 0
    again = as_json(run("import-hf-cache", "--json", HF_HUB_OFFLINE="1"))
    assert {a["status"] for a in again} == {"already cached"}


def test_shape_mismatch_is_reported_in_one_line_and_recorded(hub, run, cache_dir):
    # The fake hub's facebook/musicgen-small is the tiny random model: not the manifest's "small".
    result = run("download", "small")

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "config.json describes" in line]
    assert lines == [
        "warning: small: config.json describes a tiny model (32 hidden x 2 layers), not the manifest's 'small'; "
        f"recorded as tiny in {USER_MANIFEST_NAME}"
    ]
    entry = load_manifest(cache_dir).get("small")
    assert entry.shape == "tiny" and entry.source == "user"
    again = run("download", "small")
    assert "config.json describes" not in again.stdout  # recorded: said once


def test_shape_mismatch_is_reported_by_folder_import(run, cache_dir, tiny_models):
    result = run("import", str(tiny_models["mono"]), "--key", "small")

    assert result.returncode == 0, result.stderr
    assert "small: config.json describes a tiny model (32 hidden x 2 layers), not the manifest's 'small'" in result.stdout
    assert load_manifest(cache_dir).get("small").shape == "tiny"


def test_shape_mismatch_is_reported_by_import_hf_cache(hub, run, cache_dir, tmp_path):
    hf_cache_fill(hub, tmp_path / "hf-home" / "hub")
    result = run("import-hf-cache")
    assert result.returncode == 0, result.stderr
    assert "small: config.json describes a tiny model" in result.stderr + result.stdout
    assert load_manifest(cache_dir).get("small").shape == "tiny"


def test_list_shows_download_size_from_stored_hub_metadata(hub, run, cache_dir, repo_folder):
    before = {row["key"]: row for row in as_json(run("models", "--json"))}
    assert before["small"]["download_bytes"] is None

    assert run("models", "list", "--refresh", "--json").returncode == 0
    hub.log.clear()
    after = {row["key"]: row for row in as_json(run("models", "list", "--json", HF_HUB_OFFLINE="1"))}

    assert after["small"]["download_bytes"] == sum((repo_folder / n).stat().st_size for n in TRANSFORMERS_FILES)
    assert after["small"]["cached"] is False and after["medium"]["download_bytes"] is None  # not on the fake hub
    assert not hub.log


def test_du_counts_hard_linked_files_once(hub, run, cache_dir, tmp_path, repo_folder):
    hf_cache_fill(hub, tmp_path / "hf-home" / "hub")
    assert run("download", "small").returncode == 0

    usage = as_json(run("models", "du", "--json"))

    where = {(r["where"], r["name"]) for r in usage["rows"]}
    assert ("mgen", "small") in where and ("hf-cache", SMALL) in where
    total = sum((repo_folder / n).stat().st_size for n in TRANSFORMERS_FILES)
    small = next(r for r in usage["rows"] if r["name"] == "small")
    assert small["bytes"] >= total
    # The mgen copy is hard links into the HF cache: counted once, plus the small bookkeeping files.
    assert total <= usage["total_bytes"] < total + 64 * 1024


@pytest.mark.parametrize("sub", ["list", "verify", "rm", "prune", "du"])
def test_every_models_subcommand_has_help_and_json(run, sub):
    result = run("models", sub, "--help")
    assert result.returncode == 0 and "--json" in result.stdout
