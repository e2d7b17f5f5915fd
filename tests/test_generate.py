"""`mgen generate` and the engine on the tiny random models (mono, stereo, melody)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_run import run_main

from musicgen_cli.engine.musicgen import GenerateSettings, load_model
from musicgen_cli.jobs.request import Request, validate
from musicgen_cli.jobs.run import run
from musicgen_cli.planning.hardware import probe, simulate

ROOT = Path(__file__).resolve().parent.parent
RATE = 32000
FRAME = RATE // 50


@pytest.fixture(scope="module")
def cpu():
    return simulate(probe(), no_gpu=True)


@pytest.fixture(scope="module")
def engines(tiny_models, cpu):
    return {v: load_model(folder, machine=cpu) for v, folder in tiny_models.items()}


@pytest.mark.parametrize("variant,channels", [("mono", 1), ("stereo", 2), ("melody", 1)])
@pytest.mark.parametrize("duration,window,context", [(0.5, 30.0, 10.0), (2.3, 1.0, 0.4)])
def test_clip_shape_rate_and_length(engines, variant, channels, duration, window, context):
    mg = engines[variant]
    result = mg.generate("jazz trio", GenerateSettings(duration=duration, seed=3, window_s=window, context_s=context))
    assert result.sample_rate == RATE
    (clip,) = result.clips
    assert clip.shape[0] == channels
    assert abs(clip.shape[1] - duration * RATE) <= FRAME
    assert np.isfinite(clip).all()
    expected_steps = 1 if window >= duration else 3  # windows of 1.0 s with 0.4 s context: 1.0 + 0.6 + 0.6 + ...
    assert result.steps >= expected_steps


def test_same_seed_same_audio_bit_for_bit(engines):
    mg = engines["mono"]
    a = mg.generate("piano", GenerateSettings(duration=0.6, seed=11))
    b = mg.generate("piano", GenerateSettings(duration=0.6, seed=11))
    c = mg.generate("piano", GenerateSettings(duration=0.6, seed=12))
    assert np.array_equal(a.clips[0], b.clips[0])
    assert not np.array_equal(a.clips[0], c.clips[0])


def test_num_samples_gives_distinct_clips_and_files(engines, tmp_path):
    mg = engines["mono"]
    request = validate(Request(prompts=("rock",), settings=GenerateSettings(duration=0.5, num_samples=3, seed=5), out=tmp_path / "take.wav"))
    paths = [w.path for w in run(request, mg)]
    assert [p.name for p in paths] == ["take-1.wav", "take-2.wav", "take-3.wav"]
    waves = [sf.read(p)[0] for p in paths]
    assert not np.array_equal(waves[0], waves[1]) and not np.array_equal(waves[1], waves[2])
    meta = json.loads((tmp_path / "take-2.json").read_text())
    assert meta["sample_index"] == 1 and meta["num_samples"] == 3 and meta["seed"] == 5


def test_continuation_keeps_the_given_audio_in_front(engines, tmp_path):
    mg = engines["stereo"]
    given = tmp_path / "given.wav"
    sf.write(given, np.random.default_rng(0).uniform(-0.3, 0.3, 22050).astype(np.float32), 22050)  # mono, 44.1k/2
    result = mg.generate("jazz", GenerateSettings(duration=0.5, seed=1, continuation=given))
    (clip,) = result.clips
    assert clip.shape[0] == 2
    assert abs(clip.shape[1] - 1.5 * RATE) <= FRAME


def test_melody_conditioning_changes_the_output(engines, tmp_path):
    mg = engines["melody"]
    tune = tmp_path / "tune.wav"
    t = np.arange(RATE * 2) / RATE
    sf.write(tune, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
    # Greedy: random tiny weights give near-uniform logits, which sampling hides and argmax shows.
    plain = mg.generate("piano", GenerateSettings(duration=0.5, greedy=True))
    guided = mg.generate("piano", GenerateSettings(duration=0.5, greedy=True, melody=tune))
    assert guided.clips[0].shape == plain.clips[0].shape
    assert not np.array_equal(plain.clips[0], guided.clips[0])


def test_melody_on_a_text_model_is_refused(engines, tmp_path):
    tune = tmp_path / "tune.wav"
    sf.write(tune, np.zeros(RATE, dtype=np.float32), RATE)
    with pytest.raises(Exception, match="takes no melody"):
        engines["mono"].generate("x", GenerateSettings(duration=0.2, melody=tune))


def test_cli_writes_wav_and_sidecar(cache_dir, tmp_path, capsys):
    out = tmp_path / "song.wav"
    proc = run_main(
        capsys, "generate", "--model-key", "tiny-random", "--duration", "0.5", "--seed", "4", "--out", str(out), "--json", "--no-gpu", "cool jazz"
    )
    assert proc.returncode == 0, proc.stderr
    data, rate = sf.read(out, always_2d=True)
    assert rate == RATE and data.shape[1] == 1 and abs(len(data) - RATE // 2) <= FRAME
    info = sf.info(out)
    assert info.subtype == "PCM_16"
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["prompt"] == "cool jazz" and meta["model"]["key"] == "tiny-random"
    assert meta["seed"] == 4 and meta["model"]["random_weights"] is True
    assert meta["settings"]["duration"] == 0.5 and meta["settings"]["top_k"] == 250
    assert {"encode", "generate", "decode", "load"} <= set(meta["timings_s"])
    assert meta["plan"]["lm_dtype"] == "float32"
    # The plan was made for these settings (Job.from_settings), not a default job.
    assert meta["plan"]["job"] == {"duration_s": 0.5, "num_samples": 1, "guidance": True, "window_s": 30.0, "prompt_s": 0.0,
                                   "text_tokens": len("cool jazz") + 1, "decoder": "encodec"}
    assert json.loads(proc.stdout)["files"] == [str(out)]
    assert set(meta["speed_estimate"]) == {"expected_steps_per_s", "measured_steps_per_s", "error_pct"}


def test_the_speed_note_speaks_only_for_estimates_from_a_probe_or_a_gpu_plan(capsys):
    from types import SimpleNamespace

    from musicgen_cli.cli import generate as cli_generate

    # tiny-random on a CPU: no probe (too small to be weight-bound), its figure a bound ~3x off
    check = {"expected_steps_per_s": 30.0, "measured_steps_per_s": 10.0, "error_pct": 200.0}
    for plan, device, shown in (({"cpu_modes": []}, "cpu", False), ({"cpu_modes": [{"mode": "float32"}]}, "cpu", True),
                                ({"cpu_modes": []}, "cuda:0", True)):
        cli_generate._note_speed([SimpleNamespace(sidecar={"speed_estimate": check, "plan": plan, "device": device})])
        assert ("expected 30.0 decode steps/s" in capsys.readouterr().err) is shown


def test_cli_lyrics_name_the_output_and_steer_the_prompt(cache_dir, tmp_path, capsys, monkeypatch):
    lyrics = tmp_path / "lyrics_terraform_my_heart.txt"
    lyrics.write_text("Terraform My Heart\n\nyou terraform my heart, heart of stone\nheart of fire\n")
    monkeypatch.chdir(tmp_path)
    proc = run_main(capsys, "generate", "--model-key", "tiny-random", "-d", "0.3", "--lyrics", str(lyrics), "jazz ballad")
    assert proc.returncode == 0, proc.stderr
    assert "cannot sing" in proc.stderr
    # output/<slug>.wav is relative to the working directory
    meta = json.loads((tmp_path / "output/terraform-my-heart.json").read_text())
    assert (tmp_path / "output/terraform-my-heart.wav").is_file()
    assert 'song titled "Terraform My Heart"' in meta["prompt"] and "heart" in meta["prompt"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model-key", "smal", "x"], "did you mean 'small'"),
        (["--model-key", "small", "--offline", "x"], "mgen download facebook/musicgen-small"),
        (["--model-key", "tiny-random", "--continue", "{bad}", "x"], "not audio"),
        (["--model-key", "tiny-random", "--continue", "{empty}", "x"], "is empty"),
        (["--model-key", "tiny-random-melody", "--melody", "{empty}", "x"], "is empty"),
        (["--model-key", "tiny-random", "--duration", "0", "x"], "duration"),
        (["--model-key", "tiny-random", "--format", "aiff", "x"], "unknown audio format"),
        (["--model-key", "tiny-random"], "no prompt given"),
        (["--model-key", "tiny-random", "--quantize", "int3", "x"], "int4"),
    ],
)
def test_bad_inputs_end_in_one_line(cache_dir, tmp_path, capsys, args, needle):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), dtype=np.float32), RATE)
    args = [a.format(bad=bad, empty=empty) for a in args]
    proc = run_main(capsys, "generate", *args, "--out", str(tmp_path / "o.wav"))
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.wav").exists()


def test_ctrl_c_leaves_no_partial_file(cache_dir, tmp_path):
    out = tmp_path / "out" / "long.wav"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "musicgen_cli", "generate", "--model-key", "tiny-random", "-d", "600", "--out", str(out), "long"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=full_env,
    )
    deadline = time.time() + 240
    for line in proc.stderr:
        if line.startswith("  generate:") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "nothing was written" in err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_load_model_with_a_resolved_model_and_plan_neither_resolves_nor_plans(cache_dir, cpu, monkeypatch):
    from musicgen_cli.engine import musicgen
    from musicgen_cli.planning import planner
    from musicgen_cli.planning.job import Job

    resolved = musicgen.resolve_model("tiny-random")
    assert resolved.entry.key == "tiny-random" and (resolved.folder / "config.json").is_file()
    plan = planner.plan_memory(resolved.config, Job(duration_s=0.4, num_samples=2), cpu)

    def forbidden(*args, **kwargs):
        raise AssertionError("resolved or planned again")

    monkeypatch.setattr(planner, "plan_memory", forbidden)
    monkeypatch.setattr(musicgen, "load_manifest", forbidden)
    monkeypatch.setattr(musicgen, "resolve_model", forbidden)
    mg = musicgen.load_model(resolved, plan=plan)
    assert mg.plan is plan and mg.folder == resolved.folder and mg.entry.key == "tiny-random"
    result = mg.generate("x", GenerateSettings(duration=0.4, num_samples=2, seed=1))
    assert len(result.clips) == 2


@pytest.mark.parametrize("variant", ["mono", "stereo"])
def test_the_plan_counts_the_steps_the_loop_runs(engines, variant):
    """One step count (arch.decode_steps) for the planner and the loop: the stereo model's
    delay spans its codebooks per channel, not all of them."""
    from musicgen_cli.planning.sizing import decode_steps, model_sizes

    mg = engines[variant]
    result = mg.generate("x", GenerateSettings(duration=2.0, seed=1))
    assert result.steps == decode_steps(2.0, model_sizes(mg.model.config)) == 103  # 4 codebooks per channel in both
