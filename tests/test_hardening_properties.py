"""Property-based pass over the validators and file readers: whatever bytes or values come in,
the answer is a result or one typed MgenError, never another exception.

A fixed budget (derandomized, a few dozen examples each) keeps it to seconds in CI and the
same examples on every run.
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicgen_cli.errors import MgenError

BUDGET = settings(derandomize=True, max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
TEXTY = st.binary(max_size=200) | st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass"))


@BUDGET
@given(data=st.binary(max_size=200))
def test_decode_is_text_or_names_the_first_bad_byte(data):
    from musicgen_cli.text import TextError, decode

    try:
        text = decode(data, "input")
    except TextError as exc:
        try:
            data.decode("utf-8")
            raise AssertionError("valid UTF-8 refused")
        except UnicodeDecodeError as real:
            assert f"byte offset {real.start}" in exc.message
        return
    assert text == data.decode("utf-8").removeprefix("\ufeff")


@BUDGET
@given(text=st.text(max_size=200))
def test_clean_leaves_no_control_character_and_is_stable(text):
    from musicgen_cli.text import clean, printable

    cleaned = clean(text)
    assert not any(ord(ch) < 32 and ch not in "\t\n" or 0x7F <= ord(ch) <= 0x9F for ch in cleaned)
    assert clean(cleaned) == cleaned
    assert "\n" not in printable(text) and "\x1b" not in printable(text)


@BUDGET
@given(lines=st.lists(st.text(max_size=30), max_size=8))
def test_sections_parse_or_name_the_line(lines):
    from musicgen_cli.engine.segments import parse_segments

    try:
        parsed = parse_segments(lines)
    except MgenError as exc:
        assert "line" in exc.message or "no sections" in exc.message
        return
    starts = [start for start, _ in parsed.sections]
    assert starts[0] == 0 and starts == sorted(set(starts)) and all(prompt.strip() for _, prompt in parsed.sections)


@BUDGET
@given(data=TEXTY, jsonl=st.booleans())
def test_batch_files_read_or_refuse_in_one_error(data, jsonl, tmp_path_factory):
    from musicgen_cli.engine.settings import GenerateSettings
    from musicgen_cli.jobs.batchfile import Defaults, read_items

    folder = tmp_path_factory.mktemp("batch")
    source = folder / ("items.jsonl" if jsonl else "items.txt")
    source.write_bytes(data)
    try:
        items = read_items(source, Defaults(model="tiny-random", settings=GenerateSettings(duration=1.0)), folder / "out")
    except MgenError:
        return
    assert items and all(item.prompt.strip() and "\x1b" not in item.prompt for item in items)


@BUDGET
@given(data=TEXTY)
def test_prompt_files_read_or_refuse(data, tmp_path_factory):
    from musicgen_cli.engine.prompts import read_text_file

    path = tmp_path_factory.mktemp("prompt") / "p.txt"
    path.write_bytes(data)
    try:
        text = read_text_file(path, "prompt")
    except MgenError:
        return
    assert text and text == text.strip() and "\ufeff" not in text[:1] and "\x1b" not in text


SIDECAR = {"prompt": "x", "model": {"key": "tiny-random"}, "seed": 1, "sample_index": 0, "settings": {"duration": 1.0}}


@BUDGET
@given(changes=st.dictionaries(st.sampled_from(["prompt", "model", "seed", "sample_index", "settings", "audio", "dtype", "batch", "device"]),
                               JSON, max_size=4),
       setting=st.dictionaries(st.sampled_from(["duration", "top_k", "top_p", "temperature", "num_samples", "segments", "melody", "engine"]),
                               JSON, max_size=3))
def test_sidecars_replay_or_name_every_problem(changes, setting, tmp_path_factory):
    from musicgen_cli.jobs.replay import read_replay

    meta = {**SIDECAR, **changes}
    if isinstance(meta.get("settings"), dict):
        meta["settings"] = {**meta["settings"], **setting}
    path = tmp_path_factory.mktemp("sidecar") / "take.json"
    path.write_text(json.dumps(meta))
    try:
        replay = read_replay(path, known_model=lambda name: name == "tiny-random")
    except MgenError as exc:
        assert exc.message and "\n" not in exc.message
        return
    assert replay.prompt == meta["prompt"] and replay.settings.seed == meta["seed"]


NUMBERS = st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.none(), st.booleans(), st.text(max_size=4))


@BUDGET
@given(values=st.fixed_dictionaries({}, optional={name: NUMBERS for name in
                                                  ("duration", "num_samples", "seed", "temperature", "top_k", "top_p", "guidance",
                                                   "window_s", "context_s", "max_rerolls", "tail_silence_s", "tail_silence_db")}))
def test_settings_validate_or_refuse_with_a_typed_error(values):
    from musicgen_cli.engine.settings import GenerateSettings

    try:
        GenerateSettings(**values).validate()
    except MgenError:
        return
    except TypeError as exc:  # only comparisons of a wrong type; they must not get this far
        raise AssertionError(f"{values}: {exc}") from exc
    for name in ("duration", "temperature", "top_p", "guidance"):
        if name in values and isinstance(values[name], float):
            assert math.isfinite(values[name])


@BUDGET
@given(text=st.text(max_size=12))
def test_sizes_parse_or_refuse(text):
    from musicgen_cli.units import parse_size

    try:
        size = parse_size(text, "--ram")
    except MgenError as exc:
        assert "--ram" in exc.message or "size" in exc.message
        return
    assert size >= 0 and any(ch.isalpha() for ch in text)

