"""`mgen studio`: sessions driven through stdin and through a real pseudo-terminal, and the session library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pexpect
import pytest
import soundfile as sf
from cli_run import one_line_error, run_main

from musicgen_cli.engine.musicgen import GenerateSettings
from musicgen_cli.jobs.studio import Studio, StudioOptions
from musicgen_cli.jobs.studio_lines import COMMANDS
from musicgen_cli.planning.hardware import probe, simulate

ROOT = Path(__file__).resolve().parents[1]
RATE = 32000


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """A model cache with tiny-random and tiny-random-stereo built, shared by the module's sessions."""
    from musicgen_cli.store.manifest import load_manifest
    from musicgen_cli.store.models import model_folder

    root = tmp_path_factory.mktemp("studio-cache")
    manifest = load_manifest(root)
    for key in ("tiny-random", "tiny-random-stereo"):
        model_folder(manifest, manifest.get(key))
    return root


def studio_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "MGEN_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "160", "PROMPT_TOOLKIT_NO_CPR": "1",  # no cursor-position queries a pty test would have to answer
    }


def sidecar(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def test_scripted_session_through_stdin(model_cache, tmp_path):
    out = tmp_path / "session"
    script = "\n".join([
        "/normalize none",
        "/seed 5",
        "jazz trio",              # take 1, seed 5
        "/again",                 # take 2, seed 6
        "/extend 0.3",            # take 3: take 2 and 0.3 s more
        "/bogus",
        "/duration abc",
        "/samples 2",
        "rock",                   # take 4: two clips
        "/keep 1 intro",
        "/takes",
        "/model tiny-random-stereo",
        "/samples 1",
        "lofi",                   # take 5, stereo
        "/settings",
        "/quit",
        "never run",
    ]) + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "musicgen_cli", "studio", "--model-key", "tiny-random", "--cache-dir", str(model_cache),
         "-d", "0.3", "--out-dir", str(out)],
        input=script, capture_output=True, text=True, env=studio_env(tmp_path), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    takes = {n: sorted(out.glob(f"take-{n:03d}-*.wav")) for n in range(1, 7)}
    assert [len(takes[n]) for n in range(1, 7)] == [1, 1, 1, 2, 1, 0]  # "never run" came after /quit
    (t1,), (t2,), (t3,), (t4a, _), (t5,) = (takes[n] for n in range(1, 6))
    assert t1.name == "take-001-jazz-trio.wav" and t4a.name == "take-004-rock-1.wav"

    # /again: same prompt, the next seed, other audio
    assert (sidecar(t1)["seed"], sidecar(t2)["seed"]) == (5, 6)
    a1, a2 = sf.read(t1, dtype="int16")[0], sf.read(t2, dtype="int16")[0]
    assert sidecar(t2)["prompt"] == "jazz trio" and not np.array_equal(a1, a2)

    # /extend: take 2 sample for sample, then 0.3 s more
    a3 = sf.read(t3, dtype="int16")[0]
    assert abs(len(a3) - len(a2) - 0.3 * RATE) <= RATE // 50
    assert np.array_equal(a3[: len(a2)], a2)
    meta3 = sidecar(t3)
    assert meta3["studio"]["extends_take"] == 2 and meta3["settings"]["continuation"] == str(t2)

    # bad lines: one error line each, the session went on
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert any("unknown command /bogus" in e for e in errors) and any("/duration needs a number" in e for e in errors)

    # /keep copied take 1's pair
    assert (out / "intro.wav").read_bytes() == t1.read_bytes()
    assert json.loads((out / "intro.json").read_text()) == sidecar(t1)

    # /model swapped: the channels changed; one load per model in the whole session
    assert [sidecar(t)["channels"] for t in (t1, t4a, t5)] == [1, 1, 2]
    assert sidecar(t5)["model"]["key"] == "tiny-random-stereo"
    assert [sidecar(t)["studio"]["model_loads"] for t in (t1, t2, t3, t4a, t5)] == [1, 1, 1, 1, 2]
    assert sum(line.startswith("[load]") for line in proc.stderr.splitlines()) == 2
    assert "model loads  2" in proc.stdout

    assert "studio> never run" not in proc.stdout
    assert "take-004-rock-2.wav" in proc.stdout  # the /takes table


def test_terminal_session_with_ctrl_c_and_history(model_cache, tmp_path):
    out = tmp_path / "session"
    child = pexpect.spawn(
        sys.executable, ["-m", "musicgen_cli", "studio", "--model-key", "tiny-random", "--cache-dir", str(model_cache),
                         "-d", "0.3", "--out-dir", str(out)],
        env=studio_env(tmp_path), encoding="utf-8", timeout=180, dimensions=(50, 160),
    )
    # prompt_toolkit draws "studio>" and moves the cursor past the space; expect each reply
    # before the next prompt, since accepting a line redraws the old prompt too.
    try:
        child.expect_exact("studio>")
        child.sendline("first take")
        child.expect(r"take-001-first-take\.wav")
        child.expect_exact("studio>")
        child.sendline("/nope")
        child.expect_exact("unknown command /nope")
        child.expect_exact("studio>")
        child.sendline("/duration 120")  # long enough to be running when ^C comes
        child.expect_exact("set duration to 120.0")
        child.expect_exact("studio>")
        child.sendline("long one")
        child.expect(r"/ 120\.0 s audio")  # the live panel shows the take's progress
        child.sendintr()
        child.expect_exact("nothing was written")
        child.expect_exact("studio>")
        child.sendline("/duration 0.3")
        child.expect_exact("set duration to 0.3")
        child.expect_exact("studio>")
        child.sendline("after the stop")
        child.expect(r"take-002-after-the-stop\.wav")
        child.expect_exact("studio>")
        child.sendeof()  # Ctrl-D ends the session
        child.expect_exact("2 take(s)")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "take-001-first-take.json", "take-001-first-take.wav", "take-002-after-the-stop.json", "take-002-after-the-stop.wav",
    ]
    history = (tmp_path / "data" / "studio-history").read_text()
    assert "+first take" in history and "+/duration 120" in history  # prompt_toolkit's FileHistory lines


@pytest.fixture(scope="module")
def studio(tiny_models, tmp_path_factory) -> Studio:
    out = tmp_path_factory.mktemp("studio-lib")
    session = Studio(
        StudioOptions(model=str(tiny_models["mono"]), out_dir=out, machine=simulate(probe(), no_gpu=True)),
        GenerateSettings(duration=0.2, seed=1),
    )
    session.start()
    return session


def test_a_take_that_asks_for_more_than_the_plan_plans_again(tiny_models, tmp_path, cache_dir):
    """/duration, /samples and /extend change what the plan assumed: the take is planned again
    (the RAM it needs grows with them), and the model is loaded again only if placement moves."""
    session = Studio(StudioOptions(model=str(tiny_models["mono"]), out_dir=tmp_path / "takes", machine=simulate(probe(), no_gpu=True)),
                     GenerateSettings(duration=0.2, seed=1))
    session.start()
    first = session.mg.plan
    assert (first.job.duration_s, first.job.num_samples, first.job.prompt_s) == (0.2, 1, 0.0)
    assert session.handle("a").kind == "take" and session.mg.plan is first  # nothing new: no plan
    session.handle("/duration 1")
    session.handle("/samples 2")
    assert session.handle("b").kind == "take"
    planned = session.mg.plan
    assert (planned.job.duration_s, planned.job.num_samples) == (1, 2)
    assert planned.estimates.peak_ram_bytes > first.estimates.peak_ram_bytes
    session.handle("/samples 1")
    assert session.handle("/extend 0.5").kind == "take"
    assert session.mg.plan.job.prompt_s == pytest.approx(1, abs=0.05)  # the 1 s take it continues
    assert session.loads == 1  # a CPU placement does not move


def test_out_of_memory_during_a_take_is_reported_and_the_model_stays_usable(studio, monkeypatch):
    import torch

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "multinomial", out_of_memory)  # the decode loop's draw: the model has run a step
        failed = studio.handle("too big")
    assert failed.kind == "failed" and "out of memory" in failed.text and "still loaded" in failed.text
    assert not list(studio.options.out_dir.glob("*too-big*"))
    made = studio.handle("fine again")
    assert made.kind == "take" and made.take.files[0].is_file()
    assert studio.loads == 1


def test_settings_use_generate_validation_and_bad_values_change_nothing(studio):
    before = studio.settings
    for line, needle in [("/duration 0", "duration"), ("/temperature 0", "temperature"), ("/samples 0", "num_samples"),
                         ("/format aiff", "unknown audio format"), ("/normalize loud", "unknown normalisation"),
                         ("/seed one", "whole number"), ("/keep 99 x", "no take 99"), ("/melody tune.wav", "takes no melody")]:
        reply = studio.handle(line)
        assert reply.kind == "error" and needle in reply.text, (line, reply.text)
    assert studio.settings == before
    assert studio.handle("/seed random").kind == "info" and studio.settings.seed is None
    studio.handle("/seed 1")


def test_play_uses_a_system_player_or_says_where_the_file_is(studio, tmp_path, monkeypatch):
    if not studio.takes:
        studio.handle("something to play")
    last = studio.takes[-1]
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if mgen[play] were not installed
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    played = tmp_path / "played.txt"
    player = bin_dir / "aplay"
    player.write_text(f"#!/bin/sh\necho \"$@\" >> {played}\n")
    player.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    reply = studio.handle(f"/play {last.number}")
    assert reply.kind == "info" and "with aplay" in reply.text
    assert played.read_text().split() == ["-q", str(last.files[0])]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    reply = studio.handle("/play")
    assert "no audio player found" in reply.text and str(last.files[0]) in reply.text


def test_keep_never_overwrites(studio):
    if not studio.takes:
        studio.handle("something to keep")
    number = studio.takes[-1].number
    assert studio.handle(f"/keep {number} best").kind == "info"
    again = studio.handle(f"/keep {number} best.wav")
    assert again.kind == "error" and "already exists" in again.text


def test_model_swap_to_an_unknown_model_keeps_the_loaded_one(studio):
    loaded, loads = studio.mg, studio.loads
    reply = studio.handle("/model tiny-randon")
    assert reply.kind == "error" and "tiny-random" in reply.text  # the manifest's suggestion
    assert studio.mg is loaded and studio.loads == loads
    made = studio.handle("after the failed swap")
    assert made.kind == "take" and sidecar(made.take.files[0])["studio"]["model_loads"] == loads


@pytest.mark.parametrize("args,needle", [
    (["--model-key", "tiny-randon"], "did you mean 'tiny-random'"),
    (["--model-key", "tiny-random", "--duration", "0"], "duration"),
    (["--model-key", "tiny-random", "--format", "aiff"], "unknown audio format"),
])
def test_bad_start_is_one_error_line_before_loading(capsys, model_cache, tmp_path, args, needle):
    result = run_main(capsys, "studio", *args, "--cache-dir", str(model_cache), "--out-dir", str(tmp_path / "s"))
    assert needle in one_line_error(result)
    assert not (tmp_path / "s").exists()


def test_segments_and_ending_shape_the_next_takes(studio, tmp_path):
    piece = tmp_path / "piece.txt"
    piece.write_text("0:00 calm piano\n0:01 drums enter\n0:02 end\n")
    assert studio.handle(f"/segments {piece}").kind == "info"
    assert studio.handle("/ending fade").kind == "info"
    assert studio.settings.duration == 2.0 and studio.settings.segments == ((0.0, "calm piano"), (1.0, "drums enter"))
    reply = studio.handle("ignored by the sections")
    assert reply.kind == "take", reply.text
    meta = sidecar(reply.take.files[0])
    assert [s["prompt"] for s in meta["composition"]["sections"]] == ["calm piano", "drums enter"]
    assert meta["composition"]["ending"] == "fade" and meta["duration_s"] == 2.0
    bad = tmp_path / "bad.txt"
    bad.write_text("0:05 late\n")
    reply = studio.handle(f"/segments {bad}")
    assert reply.kind == "error" and "line 1" in reply.text and studio.settings.segments  # the old sections stay
    assert studio.handle("/segments off").kind == "info" and studio.settings.segments is None
    assert studio.handle("/ending cut").kind == "info"


def test_decoder_command_plans_again_and_decodes_with_mbd(model_cache, tmp_path, monkeypatch):
    """/decoder mbd finds the checkpoint now (built for random models), the next take is planned
    with MultiBand Diffusion (on the same placement: no second load) and its sidecar records
    it; /decoder encodec goes back; an unknown decoder changes nothing."""
    from musicgen_cli.planning.planner import DIFFUSION_ROW

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    session = Studio(StudioOptions(model="tiny-random", out_dir=tmp_path / "takes", cache_dir=model_cache,
                                   machine=simulate(probe(model_cache), no_gpu=True)), GenerateSettings(duration=0.2, seed=1))
    session.start()
    assert session.mg.plan.diffusion_device is None
    bad = session.handle("/decoder hifigan")
    assert bad.kind == "error" and "encodec, mbd" in bad.text and session.settings.decoder == "encodec"
    assert session.handle("/decoder mbd").kind == "info" and session.describe()["decoder"] == "mbd"
    plan = session.handle("/plan").data
    assert plan.diffusion_device == "cpu" and any(c.name == DIFFUSION_ROW for c in plan.components)
    made = session.handle("with diffusion")
    assert made.kind == "take", made.text
    assert session.mg.plan.diffusion_device == "cpu" and session.loads == 1
    assert sidecar(made.take.files[0])["decoder"]["name"] == "mbd"
    assert session.handle("/decoder encodec").kind == "info"
    assert sidecar(session.handle("plain again").take.files[0])["decoder"] == {"name": "encodec"}
    assert "decoder" in dict(COMMANDS)


def test_decoder_mbd_without_the_released_checkpoint_is_one_error_and_changes_nothing(studio, monkeypatch, cache_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a plain model folder needs the released checkpoint, not downloaded here
    reply = studio.handle("/decoder mbd")
    assert reply.kind == "error" and "mgen download mbd" in reply.text
    assert studio.settings.decoder == "encodec"
