"""`mgen download` against a real HTTP server speaking the hub's protocol, through huggingface_hub itself."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import socket
import threading
import pytest
from cli_run import one_line_error, run_main
from fake_hub import AUDIOCRAFT, BIG, GOOD_TOKEN, SMALL, TRANSFORMERS_FILES, file_gets, mgen

from musicgen_cli.errors import DownloadError, Interrupted
from musicgen_cli.events import Progress
from musicgen_cli.store.cache import READY_MARKER, read_marker
from musicgen_cli.store.hub import PARTIAL_SUFFIX, download_model
from musicgen_cli.store.manifest import load_manifest

def test_download_fetches_transformers_files_verifies_and_marks_ready(hub, cache_dir, repo_folder):
    result = mgen(cache_dir, hub.url, "download", "small")

    assert result.returncode == 0, result.stderr
    folder = cache_dir / "musicgen-small"
    assert {p.name for p in folder.iterdir()} == TRANSFORMERS_FILES | {READY_MARKER}
    for name in TRANSFORMERS_FILES:
        assert (folder / name).read_bytes() == (repo_folder / name).read_bytes()
    marker = read_marker(folder)
    assert marker["repo_id"] == SMALL and marker["revision"] == "main"
    assert marker["commit"] == hub.repos[SMALL].commit
    weights = (repo_folder / "model.safetensors").read_bytes()
    assert marker["files"]["model.safetensors"] == {"size": len(weights), "sha256": hashlib.sha256(weights).hexdigest()}
    assert not file_gets(hub, "state_dict.bin") and not file_gets(hub, "pytorch_model.bin")
    assert "total: " in result.stdout and "(100%)" in result.stdout


def test_second_download_of_a_ready_model_fetches_nothing(hub, run, cache_dir):
    assert run("download", "small").returncode == 0
    hub.log.clear()

    again = run("download", "--model-key", SMALL)

    assert again.returncode == 0, again.stderr
    assert "already downloaded" in again.stdout
    assert not hub.requests("GET", "/resolve/")


def test_models_lists_download_as_cached(hub, run, cache_dir):
    def cached(key: str) -> bool:
        listing = run("models", "--json")
        assert listing.returncode == 0, listing.stderr
        return {row["key"]: row["cached"] for row in json.loads(listing.stdout)}.get(key, False)

    assert not cached("small")
    assert run("download", "small").returncode == 0
    assert cached("small")


def test_unlisted_repo_id_is_registered_in_user_manifest(hub, run, cache_dir):
    result = run("download", "--model-key", "acme/musicgen-tiny")

    assert result.returncode == 0, result.stderr
    manifest = load_manifest(cache_dir)
    entry = manifest.get("musicgen-tiny")
    assert entry.repo_id == "acme/musicgen-tiny" and entry.source == "user"
    assert entry.shape == "tiny" and entry.capabilities.channels == 1 and not entry.capabilities.melody
    assert manifest.is_cached(entry)
    assert (cache_dir / "acme--musicgen-tiny" / "model.safetensors").is_file()


def test_include_audiocraft_goes_to_audiocraft_cache_dir(hub, run, cache_dir, tmp_path):
    audiocraft = tmp_path / "audiocraft-cache"
    result = run("download", "small", "--include-audiocraft", AUDIOCRAFT_CACHE_DIR=str(audiocraft))

    assert result.returncode == 0, result.stderr
    commit = hub.repos[SMALL].commit
    repo_dir = audiocraft / "models--facebook--musicgen-small"
    for name, data in AUDIOCRAFT.items():
        assert (repo_dir / "snapshots" / commit / name).read_bytes() == data
        assert not (cache_dir / "musicgen-small" / name).exists()
    assert (repo_dir / "refs" / "main").read_text() == commit
    assert set(read_marker(cache_dir / "musicgen-small")["files"]) == TRANSFORMERS_FILES | set(AUDIOCRAFT)


def test_include_audiocraft_without_its_cache_dir_uses_the_model_folder(hub, run, cache_dir):
    result = run("download", "small", "--include-audiocraft")

    assert result.returncode == 0, result.stderr
    for name, data in AUDIOCRAFT.items():
        assert (cache_dir / "musicgen-small" / name).read_bytes() == data


def test_cut_transfer_resumes_with_range_on_next_run(hub, run, cache_dir, big_repo_folder):
    hub.cut.add((BIG, "model.safetensors"))

    first = run("download", BIG)

    one_line_error(first)
    assert "dropped" in first.stdout or "resume" in first.stdout
    folder = cache_dir / "acme--musicgen-big"
    assert not (folder / READY_MARKER).exists() and not (folder / "model.safetensors").exists()
    partials = list(folder.glob(f".model.safetensors.*{PARTIAL_SUFFIX}"))
    assert len(partials) == 1
    kept = partials[0].stat().st_size
    weights = (big_repo_folder / "model.safetensors").read_bytes()
    assert 0 < kept < len(weights)

    hub.outage = False
    hub.log.clear()
    second = run("download", BIG)

    assert second.returncode == 0, second.stderr
    assert [r[2] for r in file_gets(hub, "model.safetensors")] == [f"bytes={kept}-"]
    assert (folder / "model.safetensors").read_bytes() == weights
    assert not list(folder.glob(f"*{PARTIAL_SUFFIX}"))
    assert (folder / READY_MARKER).exists()


def test_corrupted_files_are_fetched_again(hub, run, cache_dir, repo_folder):
    # Wrong bytes of the right size: caught by the LFS sha256 and, for plain files, the git blob id.
    hub.corrupt[(SMALL, "model.safetensors")] = 1
    hub.corrupt[(SMALL, "config.json")] = 1

    result = run("download", "small")

    assert result.returncode == 0, result.stderr
    assert "model.safetensors failed its checksum" in result.stdout
    assert len(file_gets(hub, "model.safetensors")) == 2 and len(file_gets(hub, "config.json")) == 2
    for name in ("model.safetensors", "config.json"):
        assert (cache_dir / "musicgen-small" / name).read_bytes() == (repo_folder / name).read_bytes()


def test_file_corrupted_twice_fails_and_is_not_marked_ready(hub, run, cache_dir):
    hub.corrupt[(SMALL, "model.safetensors")] = 2

    line = one_line_error(run("download", "small"))

    assert "failed verification twice" in line
    folder = cache_dir / "musicgen-small"
    assert not (folder / READY_MARKER).exists() and not (folder / "model.safetensors").exists()


def test_unknown_repo_is_one_line_error(hub, cache_dir):
    line = one_line_error(mgen(cache_dir, hub.url, "download", "nobody/no-such-model"))
    assert "nobody/no-such-model not found" in line


def test_unknown_revision_is_one_line_error(hub, run, cache_dir):
    line = one_line_error(run("download", "small", "--revision", "v9"))
    assert "revision 'v9' not found" in line


def test_unreachable_hub_is_one_line_error(cache_dir):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below, so nothing listens there
    line = one_line_error(mgen(cache_dir, f"http://127.0.0.1:{port}", "download", "small"))
    assert "cannot reach the hub" in line
    assert not (cache_dir / "musicgen-small" / READY_MARKER).exists()


def test_endpoint_that_is_not_a_hub_is_one_line_error(hub, cache_dir):
    line = one_line_error(mgen(cache_dir, hub.url + "/captive-portal", "download", "small"))
    assert "did not answer like a Hugging Face hub" in line and "HF_ENDPOINT" in line


def test_offline_mode_refuses_without_a_request_unless_cached(hub, run, cache_dir):
    line = one_line_error(run("download", "small", HF_HUB_OFFLINE="1"))
    assert "HF_HUB_OFFLINE" in line
    assert not hub.requests("GET", "/models/")

    assert run("download", "small").returncode == 0
    hub.log.clear()
    cached = run("download", "small", HF_HUB_OFFLINE="1")
    assert cached.returncode == 0 and "in the cache" in cached.stdout
    assert not hub.log


def test_random_weight_entry_is_built_not_downloaded(cache_dir, capsys):
    result = run_main(capsys, "download", "tiny-random")

    assert result.returncode == 0, result.stderr
    assert "random-weight" in result.stdout
    assert read_marker(cache_dir / "tiny-random")["random_weights"] is True


@pytest.mark.parametrize("token", [None, "hf_wrong_token_456"])
def test_gated_repo_without_access_names_hf_token(hub, run, cache_dir, token):
    env = {"HF_TOKEN": token} if token else {}
    result = run("download", "acme/gated-musicgen", **env)

    line = one_line_error(result)
    assert "gated" in line and "HF_TOKEN" in line and "huggingface-cli login" in line
    if token:
        assert token not in result.stdout + result.stderr


def test_gated_repo_with_token_downloads_without_printing_it(hub, run, cache_dir):
    result = run("download", "acme/gated-musicgen", HF_TOKEN=GOOD_TOKEN)

    assert result.returncode == 0, result.stderr
    assert GOOD_TOKEN not in result.stdout + result.stderr
    assert (cache_dir / "acme--gated-musicgen" / READY_MARKER).exists()
    assert GOOD_TOKEN not in (cache_dir / "acme--gated-musicgen" / READY_MARKER).read_text()


class Recorder:
    def __init__(self):
        self.events: list = []

    def phase(self, name: str, detail: str = "") -> None:
        self.events.append(("phase", name))

    def progress(self, update: Progress) -> None:
        self.events.append(update)

    def message(self, text: str, level: str = "info") -> None:
        self.events.append(("message", level, text))


def test_reporter_gets_byte_progress_per_file_and_overall(in_process_hub, cache_dir, repo_folder):
    manifest = load_manifest(cache_dir)
    recorder = Recorder()

    folder = download_model(manifest, manifest.get("small"), reporter=recorder)

    updates = [e for e in recorder.events if isinstance(e, Progress)]
    assert all(u.unit == "B" for u in updates)
    sizes = {name: (repo_folder / name).stat().st_size for name in TRANSFORMERS_FILES}
    last = {u.task: u for u in updates}
    assert set(last) == set(sizes) | {"total", "verify"}
    for name, size in sizes.items():
        assert (last[name].done, last[name].total) == (size, size)
    for task in ("total", "verify"):
        assert (last[task].done, last[task].total) == (sum(sizes.values()), sum(sizes.values()))
    assert [e[1] for e in recorder.events if isinstance(e, tuple) and e[0] == "phase"] == ["resolve", "download", "verify"]
    assert folder == cache_dir / "musicgen-small"


def test_not_enough_disk_space_stops_before_downloading(in_process_hub, cache_dir, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 1000, 1000))
    manifest = load_manifest(cache_dir)

    with pytest.raises(DownloadError, match="not enough disk space"):
        download_model(manifest, manifest.get("small"))

    assert not in_process_hub.requests("GET", "/resolve/")
    assert not (cache_dir / "musicgen-small" / READY_MARKER).exists()


def test_ctrl_c_leaves_nothing_marked_ready_and_says_how_to_resume(in_process_hub, cache_dir):
    class InterruptOnWeights(Recorder):
        def progress(self, update: Progress) -> None:
            if update.task == "model.safetensors" and update.done:
                raise KeyboardInterrupt

    manifest = load_manifest(cache_dir)
    with pytest.raises(Interrupted, match="resume") as caught:
        download_model(manifest, manifest.get(BIG), reporter=InterruptOnWeights())

    assert caught.value.exit_code == 130
    folder = cache_dir / "acme--musicgen-big"
    assert not (folder / READY_MARKER).exists() and not (folder / "model.safetensors").exists()
    assert BIG not in {e.repo_id for e in load_manifest(cache_dir).entries.values()}


def test_disk_filling_up_mid_download_is_a_download_error(in_process_hub, cache_dir):
    class DiskFull(Recorder):
        def progress(self, update: Progress) -> None:
            if update.task == "model.safetensors" and update.done:
                raise OSError(errno.ENOSPC, "No space left on device")

    manifest = load_manifest(cache_dir)
    with pytest.raises(DownloadError, match="disk filled up"):
        download_model(manifest, manifest.get("small"), reporter=DiskFull())

    assert not (cache_dir / "musicgen-small" / READY_MARKER).exists()


def test_a_second_download_of_the_same_model_waits_for_the_first(in_process_hub, cache_dir):
    from huggingface_hub.utils import WeakFileLock

    manifest = load_manifest(cache_dir)
    done = []
    with WeakFileLock(cache_dir / ".musicgen-small.lock"):  # as another mgen process holds it
        worker = threading.Thread(target=lambda: done.append(download_model(manifest, manifest.get("small"))))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and not in_process_hub.requests("GET", "/resolve/")
    worker.join(timeout=30)

    assert done == [cache_dir / "musicgen-small"]
    assert (cache_dir / "musicgen-small" / READY_MARKER).exists()


# -- every received byte is kept (hardening) ---------------------------------------------------------


def test_dropped_connection_keeps_every_byte_received(run, in_process_hub, cache_dir, repo_folder):
    """The hub client's own writer buffers 10 MiB, so a cut in a smaller file used to keep nothing."""
    in_process_hub.cut.add((SMALL, "model.safetensors"))
    weights = (repo_folder / "model.safetensors").read_bytes()

    first = run("download", "small")

    one_line_error(first)
    (partial,) = (cache_dir / "musicgen-small").glob(f".model.safetensors.*{PARTIAL_SUFFIX}")
    assert partial.read_bytes() == weights[: len(weights) * 9 // 10]  # all the server sent before hanging up

    in_process_hub.outage = False
    in_process_hub.log.clear()
    assert run("download", "small").returncode == 0
    assert [r[2] for r in file_gets(in_process_hub, "model.safetensors")] == [f"bytes={len(weights) * 9 // 10}-"]
    assert (cache_dir / "musicgen-small" / "model.safetensors").read_bytes() == weights


def test_ctrl_c_between_chunks_keeps_every_byte_reported(in_process_hub, cache_dir, big_repo_folder):
    class InterruptAfterFirstChunk(Recorder):
        done = 0

        def progress(self, update: Progress) -> None:
            if update.task == "model.safetensors" and update.done:
                self.done = update.done
                raise KeyboardInterrupt

    manifest = load_manifest(cache_dir)
    stop = InterruptAfterFirstChunk()
    with pytest.raises(Interrupted):
        download_model(manifest, manifest.get(BIG), reporter=stop)

    (partial,) = (cache_dir / "acme--musicgen-big").glob(f".model.safetensors.*{PARTIAL_SUFFIX}")
    weights = (big_repo_folder / "model.safetensors").read_bytes()
    assert 0 < stop.done == partial.stat().st_size
    assert partial.read_bytes() == weights[: stop.done]


@pytest.mark.parametrize("repo_id", ["facebook/..", "facebook/.", "..//x", "a--b/c", "facebook/musicgen-small.", "x/-y"])
def test_malformed_repo_ids_are_refused_before_any_request(run, in_process_hub, cache_dir, repo_id):
    error = one_line_error(run("download", repo_id))
    assert "valid repo id" in error or "model folder" in error
    assert in_process_hub.log == []
