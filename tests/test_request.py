"""The library entry point: Request, validate, render, write, run (jobs/request.py, jobs/run.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import soundfile as sf

from musicgen_cli.engine.audio import AudioOptions
from musicgen_cli.engine.musicgen import load_model
from musicgen_cli.engine.settings import GenerateSettings
from musicgen_cli.errors import AudioError, MgenError, OutputExists, ValidationError
from musicgen_cli.jobs.request import Request, request_from_fields, validate
from musicgen_cli.jobs.run import render, run, write
from musicgen_cli.planning.hardware import probe, simulate


@pytest.fixture(scope="module")
def mono(tiny_models, one_torch_thread):
    return load_model(tiny_models["mono"], machine=simulate(probe(), no_gpu=True))


def test_validate_settles_format_and_files(tmp_path):
    request = validate(Request(prompts=("calm piano",), settings=GenerateSettings(num_samples=2), out_dir=tmp_path))
    assert request.audio.format == "wav"
    assert request.paths == (tmp_path / "calm-piano-1.wav", tmp_path / "calm-piano-2.wav")
    named = validate(Request(prompts=("x",), out=tmp_path / "song.mp3"))
    assert named.audio.format == "mp3" and named.paths == (tmp_path / "song.mp3",)


@pytest.mark.parametrize("change,error", [
    ({"settings": GenerateSettings(top_k=-1)}, ValidationError),
    ({"audio": AudioOptions(format="aiff")}, AudioError),
    ({"audio": AudioOptions(fade_out_s=20.0)}, MgenError),
    ({"take": 3}, ValidationError),
    ({"prompts": "not a tuple"}, ValidationError),
])
def test_validate_refuses_before_any_loading(tmp_path, change, error):
    with pytest.raises(error):
        validate(Request(**{"prompts": ("x",), "out_dir": tmp_path, **change}))


def test_validate_refuses_an_existing_take_unless_overwrite(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"old")
    with pytest.raises(OutputExists):
        validate(Request(prompts=("x",), out=tmp_path / "a.wav"))
    assert validate(Request(prompts=("x",), out=tmp_path / "a.wav", overwrite=True)).paths == (tmp_path / "a.wav",)


def test_request_from_fields_maps_settings_audio_and_paths(tmp_path):
    request = request_from_fields({
        "prompt": "lofi", "model": "tiny-random", "duration": 2, "seed": 7, "format": "flac", "fade_out_s": 0.5,
        "out_dir": str(tmp_path), "segments": [[0, "intro"], [1, "drop"]],
    })
    assert request.prompts == ("lofi",) and request.model == "tiny-random" and request.out_dir == tmp_path
    assert request.settings.duration == 2 and request.settings.seed == 7
    assert request.settings.segments == ((0.0, "intro"), (1.0, "drop"))
    assert request.audio.format == "flac" and request.audio.fade_out_s == 0.5
    with pytest.raises(ValidationError):
        request_from_fields({"prompt": "x", "bogus": 1})


def test_render_in_one_place_write_in_another_gives_the_same_files(mono, tmp_path):
    """A Rendered pickles (a worker renders, the driver writes) and writes the same bytes as run."""
    settings = GenerateSettings(duration=0.4, seed=9, num_samples=2)
    direct = validate(Request(prompts=("jazz",), settings=settings, out=tmp_path / "direct.wav"))
    written = run(direct, mono)
    shipped = pickle.loads(pickle.dumps(render(direct, mono)))
    later = validate(Request(prompts=("jazz",), settings=settings, out=tmp_path / "later.wav"))
    again = write(shipped, later)
    assert [w.path.name for w in written] == ["direct-1.wav", "direct-2.wav"]
    for one, two in zip(written, again):
        assert one.path.read_bytes() == two.path.read_bytes()
        record = json.loads(one.sidecar_path.read_text())
        assert record == json.loads(json.dumps(one.sidecar, default=str))
        assert record["audio_file"] == one.path.name and record["seed"] == 9
        assert one.clipped_samples == record["audio"]["clipped_samples"]
        assert one.measured["sample_peak_dbfs"] == record["audio"]["measured"]["sample_peak_dbfs"]
        assert sf.info(str(one.path)).frames == round(0.4 * 32000)


def test_a_take_keeps_one_clip_of_the_batch(mono, tmp_path):
    settings = GenerateSettings(duration=0.3, seed=4, num_samples=3)
    every = run(validate(Request(prompts=("x",), settings=settings, out=tmp_path / "all.wav")), mono)
    (one,) = run(validate(Request(prompts=("x",), settings=settings, out=tmp_path / "one.wav", take=1)), mono)
    assert one.sidecar["sample_index"] == 1 and one.sidecar["num_samples"] == 3
    assert sf.read(str(one.path))[0].tolist() == sf.read(str(every[1].path))[0].tolist()


def test_write_needs_a_validated_request(mono, tmp_path):
    request = Request(prompts=("x",), settings=GenerateSettings(duration=0.2, seed=1))
    with pytest.raises(ValidationError):
        write(render(request, mono), request)
    assert not list(Path(tmp_path).iterdir())
