"""`mgen batch`: input files, manifest merging, resume, and end-to-end runs on the tiny model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf
from cli_run import one_line_error, run_main

from musicgen_cli.engine.musicgen import GenerateSettings
from musicgen_cli.errors import MgenError
from musicgen_cli.jobs import batchlog
from musicgen_cli.jobs.batchfile import (
    BatchInputError,
    Defaults,
    by_group,
    make_batches,
    read_items,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = Defaults(model="tiny-random", settings=GenerateSettings(duration=0.3))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- input files ----------------------------------------------------------------------------------


def test_text_file_one_prompt_a_line(tmp_path):
    src = write(tmp_path / "p.txt", "jazz trio\n\n# a comment\nlofi beat\n")
    items = read_items(src, DEFAULTS, tmp_path / "out")
    assert [(it.line, it.prompt, it.id) for it in items] == [(1, "jazz trio", "0001-jazz-trio"), (4, "lofi beat", "0002-lofi-beat")]
    assert all(it.model == "tiny-random" and it.settings.duration == 0.3 and it.settings.seed is None for it in items)
    # Seeds without --seed are derived from the name: stable across runs and ranks, distinct per item.
    again = read_items(src, DEFAULTS, tmp_path / "out")
    assert [it.seed for it in items] == [it.seed for it in again] and items[0].seed != items[1].seed


def test_base_seed_and_jsonl_fields(tmp_path):
    melody = tmp_path / "tune.wav"
    sf.write(melody, [0.0] * 800, 8000)
    src = write(
        tmp_path / "p.jsonl",
        "\n".join(
            [
                json.dumps({"prompt": "a"}),
                json.dumps({"prompt": "b", "seed": 7, "duration": 2, "output": "drums/kick.wav", "temperature": 0.5}),
                json.dumps({"prompt": "c", "model": "stereo-tiny", "num_samples": 2, "melody": "tune.wav"}),
            ]
        ),
    )
    items = read_items(src, Defaults("tiny-random", GenerateSettings(duration=1.0), base_seed=100), tmp_path / "out")
    a, b, c = items
    assert (a.seed, b.seed, c.seed) == (100, 7, 102)
    assert b.id == "drums/kick" and b.settings.duration == 2.0 and b.settings.temperature == 0.5
    assert b.audio_paths(tmp_path / "out") == [(tmp_path / "out" / "drums" / "kick.wav").resolve()]
    assert c.model == "stereo-tiny" and c.settings.melody == melody
    assert [p.name for p in c.audio_paths(tmp_path / "out")] == ["0003-c-1.wav", "0003-c-2.wav"]


def test_bad_lines_are_all_reported_with_line_numbers(tmp_path):
    lines = [
        json.dumps({"prompt": "fine"}),
        "{not json",
        json.dumps({"prompt": "x", "speed": 3}),
        json.dumps({"prompt": ""}),
        json.dumps({"prompt": "y", "output": "../escape"}),
        json.dumps({"prompt": "z", "duration": "long"}),
        json.dumps({"prompt": "w", "output": "0001-fine"}),
        json.dumps({"prompt": "v", "model": "nope"}),
        json.dumps({"prompt": "u", "duration": -1}),
        json.dumps(["prompt"]),
    ]
    src = write(tmp_path / "p.jsonl", "\n".join(lines))

    def known(name):
        if name == "nope":
            raise MgenError("unknown model key 'nope'")

    with pytest.raises(BatchInputError) as caught:
        read_items(src, DEFAULTS, tmp_path / "out", known)
    message = str(caught.value)
    assert "9 bad line(s)" in message
    for number, words in [(2, "not valid JSON"), (3, "unknown key(s) speed"), (4, "no prompt"), (5, "escapes"),
                          (6, "duration must be a number"), (7, "already used by line 1"), (8, "unknown model key"),
                          (9, "out of range"), (10, "JSON object")]:
        assert re.search(rf"line {number}: [^;]*{re.escape(words)}", message), (number, message)
    assert not (tmp_path / "out").exists()


def test_grouping_and_batches(tmp_path):
    src = write(
        tmp_path / "p.jsonl",
        "\n".join(json.dumps(d) for d in [
            {"prompt": "a"}, {"prompt": "b", "duration": 1}, {"prompt": "c"}, {"prompt": "d", "model": "m2"},
            {"prompt": "e"}, {"prompt": "f", "duration": 1}, {"prompt": "g"},
        ]),
    )
    items = read_items(src, DEFAULTS, tmp_path / "out")
    batches = make_batches(by_group(items), 3)
    assert [[it.prompt for it in b] for b in batches] == [["a", "c", "e"], ["g"], ["b", "f"], ["d"]]
    assert [it.prompt for it in by_group(items)] == ["a", "c", "e", "g", "b", "f", "d"]


# -- manifest merging -------------------------------------------------------------------------------


def test_fold_keeps_latest_record_per_id_and_loses_nothing(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"id": "a", "status": "failed", "finished_at": 1}) + "\n" + json.dumps({"id": "b", "status": "ok", "finished_at": 1}) + "\n"
    )
    log0, log1 = batchlog.RankLog(tmp_path, 0), batchlog.RankLog(tmp_path, 1)
    log0.append({"id": "a", "status": "ok", "finished_at": 5})
    log1.append({"id": "c", "status": "ok", "finished_at": 4})
    log0.close(), log1.close()
    with open(batchlog.rank_file(tmp_path, 1), "a") as torn:  # a kill in the middle of a write
        torn.write('{"id": "d", "sta')
    latest = batchlog.fold(tmp_path, ["c", "b", "a"])
    lines = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in lines] == [("c", "ok"), ("b", "ok"), ("a", "ok")]
    assert set(latest) == {"a", "b", "c"}
    assert not list(tmp_path.glob("manifest.rank-*.jsonl"))
    batchlog.fold(tmp_path, ["c", "b", "a"])  # idempotent
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 3


def test_outputs_verify_only_for_their_own_item(tmp_path):
    src = write(tmp_path / "p.txt", "jazz trio\n")
    (item,) = read_items(src, DEFAULTS, tmp_path)
    (wav,) = item.audio_paths(tmp_path)
    assert batchlog.verified_outputs(item, tmp_path) is None
    sf.write(wav, [[0.1]] * 320, 32000)
    meta = {"batch_item": item.id, "prompt": item.prompt, "sample_rate": 32000, "seed": 3}
    wav.with_suffix(".json").write_text(json.dumps(meta))
    assert batchlog.verified_outputs(item, tmp_path)["seed"] == 3
    wav.with_suffix(".json").write_text(json.dumps({**meta, "prompt": "something else"}))
    assert batchlog.verified_outputs(item, tmp_path) is None
    wav.with_suffix(".json").write_text(json.dumps(meta))
    wav.write_bytes(b"RIFF....")  # a torn file
    assert batchlog.verified_outputs(item, tmp_path) is None


# -- end to end on the tiny model ---------------------------------------------------------------------

SECONDS = 0.3
# One torch thread a process: tiny models gain nothing from more, and on a shared 2-core machine
# spinning OpenMP threads of parallel test processes slow each other down tenfold.
def env() -> dict[str, str]:
    """Read when a test runs, after the cache_dir fixture exported MGEN_CACHE_DIR (else runs
    would build their models in the working directory's model-cache/)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture()
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicgen_cli", "batch", *args], capture_output=True, text=True, env=env(), timeout=timeout)


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def prompts_file(tmp_path: Path, n: int) -> Path:
    return write(tmp_path / "prompts.txt", "".join(f"clip number {i}\n" for i in range(n)))


def test_ten_items_on_one_process_batched_resumable(tmp_path, cache_dir, one_thread):
    from musicgen_cli.jobs.batch import BatchOptions, run_batch
    from musicgen_cli.planning.hardware import probe, simulate

    out = tmp_path / "out"
    lines = [json.dumps({"prompt": f"clip {i}"}) for i in range(9)]
    lines.append(json.dumps({"prompt": "too long a window", "window_s": 500.0}))  # passes parsing, fails on the model
    src = write(tmp_path / "items.jsonl", "\n".join(lines))
    items = read_items(src, Defaults("tiny-random", GenerateSettings(duration=SECONDS), base_seed=10), out)
    options = BatchOptions(max_batch=4, cache_dir=cache_dir, machine=simulate(probe(), no_gpu=True))

    summary = run_batch(items, out, options)
    assert (summary.items, summary.done, summary.failed, summary.generated) == (10, 9, 1, 10)
    records = manifest_lines(out)
    assert [r["id"] for r in records] == [it.id for it in items]
    ok = [r for r in records if r["status"] == "ok"]
    # Nine items sharing model and settings: passes of 4, 4 and 1, each on its first item's seed.
    assert sorted({(r["batch"]["size"], r["seed"]) for r in ok}) == [(1, 18), (4, 10), (4, 14)]
    for record in ok:
        wav = out / record["files"][0]
        data, rate = sf.read(wav)
        assert rate == 32000 and abs(len(data) - SECONDS * rate) <= 640
        meta = json.loads(wav.with_suffix(".json").read_text())
        assert meta["batch_item"] == record["id"] and meta["seed"] == record["seed"] and meta["item_seed"] == record["item_seed"]
        # One plan for the model's largest pass (Job.covering), its 500 s window clamped to what the model holds.
        assert meta["plan"]["job"] == {"duration_s": SECONDS, "num_samples": 4, "guidance": True, "window_s": 2047 / 50,
                                       "prompt_s": 0.0, "text_tokens": 64, "decoder": "encodec"}
        assert record["timings_s"]["generate"] > 0 and record["attempt"] == 1
    (failed,) = [r for r in records if r["status"] == "failed"]
    assert "window" in failed["error"] and failed["files"] == [] and not list(out.glob("0010-*"))
    assert not list(out.glob("manifest.rank-*")) and not (out / ".mgen-batch").exists()

    stamp = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    again = run_batch(items, out, options)  # nothing to do: good outputs are never rewritten, failures wait for --retry-failed
    assert (again.generated, again.skipped, again.failed) == (0, 10, 1)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")} == stamp
    retry = run_batch(items, out, replace(options, retry_failed=True))
    assert retry.generated == 1
    assert [r["attempt"] for r in manifest_lines(out)] == [1] * 9 + [2]
    assert len(manifest_lines(out)) == 10


def test_two_processes_under_accelerate_do_each_item_once(tmp_path, cache_dir):
    out = tmp_path / "out"
    src = prompts_file(tmp_path, 10)
    done = run_cli(str(src), "--out-dir", str(out), "--model-key", "tiny-random", "--duration", str(SECONDS),
                   "--max-batch", "5", "--processes", "2", "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert (summary["done"], summary["failed"], summary["generated"]) == (10, 0, 10)
    records = manifest_lines(out)
    assert len(records) == 10 and len({r["id"] for r in records}) == 10
    assert all(r["status"] == "ok" and r["attempt"] == 1 for r in records)
    assert {r["rank"] for r in records} == {0, 1}
    assert len(list(out.glob("*.wav"))) == 10 and not list(out.glob("manifest.rank-*"))


def test_kill_mid_batch_then_rerun_finishes_only_the_rest(tmp_path, cache_dir):
    out = tmp_path / "out"
    # enough items that a quiet machine cannot finish them all between two polls
    src = prompts_file(tmp_path, 30)
    args = [str(src), "--out-dir", str(out), "--model-key", "tiny-random", "--duration", str(SECONDS), "--max-batch", "1", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "musicgen_cli", "batch", *args], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rank0 = out / "manifest.rank-0.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not rank0.exists() or len(rank0.read_text().splitlines()) < 2):
        assert proc.poll() is None, "the batch ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {r["id"]: r for r in batchlog.read_jsonl(rank0)}
    assert 2 <= len(first) < 30

    again = run_cli(*args, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    records = manifest_lines(out)
    assert len(records) == 30 and len({r["id"] for r in records}) == 30
    assert all(r["status"] == "ok" and r["attempt"] == 1 for r in records)
    for record in records:
        if record["id"] in first:  # finished before the kill: kept as it was
            assert record == first[record["id"]]
        else:  # generated by the rerun (or found on disk if it was written just before the kill)
            assert record["run"] != next(iter(first.values()))["run"]
    summary = json.loads(again.stdout[again.stdout.index("{"):])
    assert summary["generated"] + summary["skipped"] == 30 and summary["generated"] <= 30 - len(first)


def test_bad_jsonl_line_is_reported_before_anything_starts(tmp_path, cache_dir, capsys):
    src = write(tmp_path / "items.jsonl", json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": "x", "seed": "one"}) + "\n")
    result = run_main(capsys, "batch", str(src), "--out-dir", str(tmp_path / "out"), "--model-key", "tiny-random")
    error = one_line_error(result)
    assert result.returncode == 2 and "1 bad line(s): line 2: seed must be an integer" in error
    assert not (tmp_path / "out").exists() and not any(cache_dir.iterdir())


def test_rank0_display_sums_every_rank_from_the_files(tmp_path):
    from rich.console import Console

    from musicgen_cli.ui.batchpanel import BatchDisplay

    batchlog.write_run(tmp_path, "r1", pending=4, skipped=2, processes=2)
    for rank, statuses in [(0, ["ok", "failed"]), (1, ["ok"])]:
        log = batchlog.RankLog(tmp_path, rank)
        for n, status in enumerate(statuses):
            log.append({"id": f"{rank}-{n}", "status": status, "files": ["a.wav"] if status == "ok" else [], "run": "r1"})
        log.append({"id": "old", "status": "ok", "files": ["b.wav"], "run": "r0"})  # an earlier run's leftover
        log.close()
        batchlog.write_status(tmp_path, batchlog.RankStatus(rank=rank, phase="generate", detail="7/15 frames", done=len(statuses), assigned=2))
    console = Console(record=True, width=140)
    console.print(BatchDisplay(console, tmp_path).render())
    text = console.export_text()
    assert "3/4 items  done 2  failed 1  already done 2" in text
    assert "rank 0: generate 7/15 frames  (2 done, 0 failed of 2)" in text and "rank 1: generate" in text
