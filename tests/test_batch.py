"""`mgen batch`: input files, manifest merging, resume, and end-to-end runs on the tiny model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from musicgen_cli import batchlog
from musicgen_cli.batchfile import BatchInputError, Defaults, by_group, make_batches, read_items
from musicgen_cli.engine import GenerateSettings
from musicgen_cli.errors import MgenError

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
                          (6, "duration must be a float"), (7, "already used by line 1"), (8, "unknown model key"),
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
