"""Sidecars pin the weights and everything else that made a clip; --from-sidecar re-makes it
byte for byte; the CLI's audio flags land in the files."""

from __future__ import annotations

import json

import pyloudnorm
import soundfile as sf
from cli_run import one_line_error, run_main

from musicgen_cli.store.cache import mark_ready
from musicgen_cli.store.fingerprint import weights_fingerprint


def test_sidecar_carries_provenance_and_replays_bit_for_bit(cache_dir, tmp_path, capsys):
    first = tmp_path / "first.mp3"
    args = ["generate", "-m", "tiny-random", "-d", "0.8", "--seed", "9", "--fade-in", "0.2", "--normalize", "loudness",
            "--loudness-headroom-db", "23", "--mp3-bitrate", "192", "--out", str(first), "-q", "bossa nova"]
    assert run_main(capsys, *args).returncode == 0
    meta = json.loads(first.with_suffix(".json").read_text())
    assert (meta["dtype"], meta["device"], meta["engine"], meta["quantize"]) == ("float32", "cpu", "fast", None)
    print_ = meta["model"]["weights_fingerprint"]
    assert print_["source"] == "recorded" and print_["files"] == 1  # built models record their sha256s and len(print_["sha256"]) == 64
    assert meta["windows"] == [{"start_s": 0.0, "prompt_frames": 0, "new_frames": 40}]
    record = meta["audio"]
    assert (record["format"], record["mp3_bitrate"], record["fade_in_s"], record["normalize"]) == ("mp3", 192, 0.2, "loudness")
    assert {"integrated_lufs", "sample_peak_dbfs", "true_peak_dbtp"} <= set(record["measured"])
    assert sf.info(first).format == "MP3"

    again = tmp_path / "again.mp3"
    assert run_main(capsys, "generate", "--from-sidecar", str(first.with_suffix(".json")), "--out", str(again), "-q").returncode == 0
    assert again.read_bytes() == first.read_bytes()
    replayed = json.loads(again.with_suffix(".json").read_text())
    assert replayed["settings"] == meta["settings"] and replayed["audio"] == meta["audio"]
    as_wav = tmp_path / "again-wav.wav"  # another suffix: the same take, written in that format
    assert run_main(capsys, "generate", "--from-sidecar", str(first.with_suffix(".json")), "--out", str(as_wav), "-q").returncode == 0
    assert sf.info(as_wav).subtype == "PCM_16" and json.loads(as_wav.with_suffix(".json").read_text())["audio"]["fade_in_s"] == 0.2


def test_replay_refuses_other_weights(cache_dir, tmp_path, capsys):
    out = tmp_path / "a.wav"
    assert run_main(capsys, "generate", "-m", "tiny-random", "-d", "0.3", "--seed", "1", "--out", str(out), "-q", "x").returncode == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    meta["model"]["weights_fingerprint"]["sha256"] = "0" * 64
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(meta))
    line = one_line_error(run_main(capsys, "generate", "--from-sidecar", str(forged), "--out", str(tmp_path / "b.wav")))
    assert "not the ones that made this clip" in line
    assert not (tmp_path / "b.wav").exists()


def test_recorded_download_hashes_make_the_fingerprint(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    computed = weights_fingerprint(folder)
    mark_ready(folder, {"commit": "abc", "files": {"model.safetensors": {"size": 7, "sha256": "f" * 64},
                                                   "config.json": {"size": 2, "sha256": "e" * 64}}})
    recorded = weights_fingerprint(folder)
    assert recorded["source"] == "recorded" and recorded["files"] == 1 and recorded["sha256"] != computed["sha256"]
    (folder / "model.safetensors").write_bytes(b"other weights")  # a recorded hash pins the download, not the disk
    assert weights_fingerprint(folder) == recorded


def test_loudness_of_a_generated_clip_and_format_flags(cache_dir, tmp_path, capsys):
    out = tmp_path / "loud.flac"
    proc = run_main(capsys, "generate", "-m", "tiny-random", "-d", "1.5", "--seed", "2", "--normalize", "loudness",
                    "--loudness-headroom-db", "23", "--subtype", "PCM_24", "--out", str(out), "-q", "x")
    assert proc.returncode == 0, proc.stderr
    data, rate = sf.read(out, always_2d=True)
    assert sf.info(out).subtype == "PCM_24"
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(data) + 23) <= 0.5
    line = one_line_error(run_main(capsys, "generate", "-m", "tiny-random", "--format", "mp3", "--out", str(tmp_path / "x.wav"), "x"))
    assert "contradicts the output name" in line


def test_batch_writes_the_format_asked(cache_dir, tmp_path, capsys):
    src = tmp_path / "prompts.txt"
    src.write_text("calm piano\n")
    out = tmp_path / "out"
    proc = run_main(capsys, "batch", str(src), "--out-dir", str(out), "--model-key", "tiny-random", "--duration", "0.3",
                    "--format", "flac", "--normalize", "rms", "-q")
    assert proc.returncode == 0, proc.stderr
    (clip,) = out.glob("*.flac")
    assert sf.info(clip).format == "FLAC"
    assert json.loads(clip.with_suffix(".json").read_text())["audio"]["normalize"] == "rms"
    assert json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["files"] == [clip.name]
