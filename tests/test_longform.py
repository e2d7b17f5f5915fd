"""Long-form composition on the tiny models: sections, re-rolls of silent endings, endings, loops."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from cli_run import one_line_error, run_main

from musicgen_cli.engine import codec
from musicgen_cli.engine.longform import ENDING_FADE_S, OUTRO_CUE
from musicgen_cli.engine.musicgen import GenerateSettings, load_model
from musicgen_cli.engine.segments import LOOP_CROSSFADE_S, parse_segments
from musicgen_cli.errors import MgenError

RATE = 32000


@pytest.fixture(scope="module")
def mg(tiny_models):
    return load_model(tiny_models["mono"], machine=None, download=False)


@pytest.fixture()
def conditioning(monkeypatch, mg):
    """The text each window of the fast loop was conditioned on, in order."""
    from musicgen_cli.decode import fastloop

    seen: list[list[int]] = []
    original = fastloop.generate_window

    def watch(model, request, on_step):
        seen.append(request.input_ids[0][request.attention_mask[0].bool()].tolist())
        return original(model, request, on_step)

    monkeypatch.setattr(fastloop, "generate_window", watch)
    return seen


def ids(mg, text: str) -> list[int]:
    return mg.tokenizer(text)["input_ids"]


def settings(**kw) -> GenerateSettings:
    return GenerateSettings(**{"seed": 5, "duration": 4.0, **kw})


def test_sections_file_parses_times_and_end():
    parsed = parse_segments("0:00 piano intro\n# a comment\n0:20 drums enter\n1:05.5 bridge\n2:00 end\n")
    assert parsed.sections == ((0.0, "piano intro"), (20.0, "drums enter"), (65.5, "bridge"))
    assert parsed.end_s == 120.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("0:05 late start\n", "line 1: the first section starts at 0:05"),
        ("0:00 a\n0:10 b\n0:10 c\n", "line 3: 0:10 is not after"),
        ("0:00 a\n0:09 b\n0:08 c\n", "line 3: 0:08 is not after"),
        ("0:00 a\n0:10\n", "line 2: the section at 0:10 has no prompt"),
        ("0:00 a\nsoon b\n", "line 2: 'soon' is not a time"),
        ("0:00 a\n0:10 end\n0:20 b\n", "line 3 comes after the `end` line"),
        ("# nothing\n", "has no sections"),
        ("0:00 a\n0:75 b\n", "line 2: '0:75' is not a time"),
    ],
)
def test_bad_sections_name_the_line(text, message):
    with pytest.raises(MgenError, match=message):
        parse_segments(text)


def test_bad_sections_file_is_refused_before_any_model_loads(tmp_path, capsys, cache_dir):
    bad = tmp_path / "piece.txt"
    bad.write_text("0:00 intro\n0:30 drums\n0:20 bridge\n")
    # `small` is not cached and --offline: had anything loaded first, the error would be the download's.
    result = run_main(capsys, "generate", "--model-key", "small", "--offline", "--segments", str(bad), "--out", str(tmp_path / "x.wav"))
    assert "line 3: 0:20 is not after the previous section's start" in one_line_error(result)
    past = tmp_path / "past.txt"
    past.write_text("0:00 intro\n0:30 drums\n")
    result = run_main(capsys, "generate", "--model-key", "small", "--offline", "--segments", str(past), "-d", "20", "--out", str(tmp_path / "y.wav"))
    assert "starts at or after the end (0:20)" in one_line_error(result)
    assert not list(tmp_path.glob("*.wav")) and not (cache_dir / "small").exists()


def test_each_section_conditions_its_own_windows_and_lengths_are_exact(mg, conditioning):
    # Windows of 2 s keeping 1 s: the 3 s second section needs two windows under its own prompt.
    s = settings(duration=5.0, segments=((0.0, "calm piano"), (2.0, "drums enter")), window_s=2.0, context_s=1.0)
    result = mg.generate("ignored", s)
    assert result.clips[0].shape == (1, 5 * RATE)  # exact to the frame (and the sample)
    sections = result.composition["sections"]
    assert [(x["start_s"], x["end_s"], x["prompt"]) for x in sections] == [(0.0, 2.0, "calm piano"), (2.0, 5.0, "drums enter")]
    windows = [(w["prompt"], w["context_frames"], w["new_frames"]) for x in sections for w in x["windows"]]
    assert windows == [("calm piano", 0, 100), ("drums enter", 50, 50), ("drums enter", 50, 50), ("drums enter", 50, 50)]
    # What the loop actually received, window by window: the prompt of the section it belongs to.
    assert conditioning == [ids(mg, "calm piano")] + [ids(mg, "drums enter")] * 3


def test_one_section_without_cue_or_reroll_gives_plain_generate_tokens(mg):
    plain = mg.generate("jazz trio", settings(duration=3.0))
    faded = mg.generate("jazz trio", settings(duration=3.0, ending="fade"))
    untouched = 3 * RATE - round(ENDING_FADE_S * RATE) if ENDING_FADE_S < 3 else 0
    np.testing.assert_array_equal(faded.clips[0][:, :untouched], plain.clips[0][:, :untouched])
    assert faded.composition["rerolls"] == [{"attempt": 0, "seed": 5, "tail_lufs": faded.composition["rerolls"][0]["tail_lufs"]}]


def test_silent_tail_is_rerolled_with_the_next_seed_and_not_otherwise(mg, monkeypatch):
    loud = mg.generate("jazz trio", settings(ending="fade", duration=6.0))
    assert len(loud.composition["rerolls"]) == 1  # nothing to re-roll

    real_decode = codec.decode
    calls = []

    def silent_first(model, codes, chunk_s=None):
        wave = real_decode(model, codes, chunk_s).clone()
        calls.append(codes.shape[-1])
        if len(calls) == 1:
            wave[..., -3 * RATE:] = 0  # the first take ends in 3 s of digital silence
        return wave

    monkeypatch.setattr(codec, "decode", silent_first)
    result = mg.generate("jazz trio", settings(ending="fade", duration=6.0))
    rerolls = result.composition["rerolls"]
    assert [(r["attempt"], r["seed"]) for r in rerolls] == [(0, 5), (1, 6)]
    assert rerolls[0]["tail_lufs"][0] == float("-inf") and rerolls[1]["tail_lufs"][0] > -50
    assert np.abs(result.clips[0][:, -3 * RATE : -RATE]).max() > 0  # the kept ending is the re-rolled, loud one
    assert len(calls) == 2


def test_outro_cues_only_the_last_window(mg, conditioning):
    s = settings(duration=4.0, segments=((0.0, "calm piano"), (2.0, "drums enter")), ending="outro")
    result = mg.generate("ignored", s)
    assert conditioning == [ids(mg, "calm piano"), ids(mg, "drums enter" + OUTRO_CUE)]
    assert ids(mg, "drums enter" + OUTRO_CUE) != ids(mg, "drums enter")
    assert result.composition["sections"][1]["windows"][-1]["prompt"] == "drums enter" + OUTRO_CUE
    assert np.abs(result.clips[0][:, -1]).max() < 1e-6  # the very end is faded to silence


def _steps(clip: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(clip, axis=-1))


def test_fade_ending_shapes_the_envelope_without_a_jump(mg):
    clip = mg.generate("jazz trio", settings(ending="fade", duration=6.0)).clips[0]
    fade = round(ENDING_FADE_S * RATE)
    quarters = np.array_split(np.abs(clip[:, -fade:]).ravel(), 4)
    assert all(a.mean() > b.mean() for a, b in zip(quarters, quarters[1:]))  # falls all the way
    assert np.abs(clip[:, -1]).max() < 1e-6
    assert _steps(clip[:, -fade:]).max() <= _steps(clip[:, :-fade]).max()


def test_loop_end_flows_into_its_start(mg, tmp_path):
    result = mg.generate("jazz trio", settings(loop=True, duration=4.0))
    clip = result.clips[0]
    assert clip.shape == (1, 4 * RATE)
    seam = np.abs(clip[:, 0] - clip[:, -1]).max()
    assert seam <= _steps(clip).max()
    assert result.composition["loop"] == {"start_sample": 0, "end_sample": 4 * RATE, "crossfade_s": LOOP_CROSSFADE_S}


def test_cli_writes_sections_and_rerolls_to_the_sidecar(tmp_path, capsys, cache_dir):
    piece = tmp_path / "piece.txt"
    piece.write_text("0:00 calm piano\n0:01 drums enter\n0:03 end\n")
    out = tmp_path / "piece.wav"
    result = run_main(capsys, "generate", "--model-key", "tiny-random", "--segments", str(piece), "--ending", "outro",
                      "--seed", "2", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    data, rate = sf.read(out, always_2d=True)
    assert rate == RATE and data.shape[0] == 3 * RATE
    meta = json.loads(out.with_suffix(".json").read_text())
    comp = meta["composition"]
    assert [s["prompt"] for s in comp["sections"]] == ["calm piano", "drums enter"]
    assert comp["ending"] == "outro" and comp["rerolls"][0]["seed"] == 2
    assert meta["settings"]["segments"] == [[0.0, "calm piano"], [1.0, "drums enter"]]


def test_batch_jsonl_takes_segments(tmp_path, capsys, cache_dir):
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"segments": ["0:00 calm piano", "0:01 drums enter", "0:02 end"], "output": "a"}) + "\n"
                     + json.dumps({"prompt": "jazz", "duration": 1.0, "output": "b"}) + "\n")
    result = run_main(capsys, "batch", str(items), "--out-dir", str(tmp_path / "out"), "--model-key", "tiny-random", "--json")
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "out" / "a.json").read_text())
    assert [s["prompt"] for s in meta["composition"]["sections"]] == ["calm piano", "drums enter"]
    assert sf.info(tmp_path / "out" / "a.wav").frames == 2 * RATE
    assert "composition" not in json.loads((tmp_path / "out" / "b.json").read_text())


def test_settings_refuse_bad_long_form_values():
    for bad, message in [
        (dict(ending="abrupt"), "unknown ending"),
        (dict(loop=True, ending="fade"), "a loop has no ending"),
        (dict(loop=True, duration=1.5), "too short to crossfade"),
        (dict(max_rerolls=-1), "--max-rerolls -1"),
        (dict(tail_silence_s=0.1), "--tail-silence-s 0.1"),
        (dict(segments=((0.0, "a"), (5.0, "b"))), "starts at or after the end"),
    ]:
        with pytest.raises(MgenError, match=message):
            replace(settings(), **bad).validate(max_window_s=30)
