"""Long form as audiocraft extends it (12 s context, melody moved to each window's start) and
continuations written whole or as the new part only."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from musicgen_cli.arch import CONTEXT_SECONDS, WINDOW_SECONDS
from musicgen_cli.decode.windows import window_plan, window_starts
from musicgen_cli.engine.musicgen import GenerateSettings, load_model
from musicgen_cli.planning.hardware import probe, simulate

RATE = 32000
FRAME_RATE = 50


@pytest.fixture(scope="module")
def engines(tiny_models):
    cpu = simulate(probe(), no_gpu=True)
    return {v: load_model(tiny_models[v], machine=cpu) for v in ("mono", "melody")}


def audiocraft_windows(duration: float, max_duration: float, extend_stride: float, prompt_frames: int = 0):
    """(start frame, prompt frames, new frames) of audiocraft's `_generate_tokens` extension loop."""
    total, stride = int(duration * FRAME_RATE), int(FRAME_RATE * extend_stride)
    offset, prompt_length, out = 0, prompt_frames, []
    while offset + prompt_length < total:
        gen_len = int(min(duration - offset / FRAME_RATE, max_duration) * FRAME_RATE)
        out.append((offset, prompt_length, gen_len - prompt_length))
        prompt_length = gen_len - stride
        offset += stride
    return out


@pytest.mark.parametrize("seconds", [45.0, 60.0, 100.0])
def test_default_windows_are_audiocrafts_extend_stride_18(seconds):
    assert (GenerateSettings().window_s, GenerateSettings().context_s) == (WINDOW_SECONDS, CONTEXT_SECONDS) == (30.0, 12.0)
    plan = window_plan(0, int(seconds * FRAME_RATE), int(30 * FRAME_RATE), int(12 * FRAME_RATE))
    ours = [(s, k, n) for s, (k, n) in zip(window_starts(plan, 0), plan)]
    assert ours == audiocraft_windows(seconds, 30.0, 18.0)
    assert [s / FRAME_RATE for s, _, _ in ours] == [0.0, 18.0, 36.0, 54.0, 72.0][: len(ours)]


def test_result_records_the_window_plan(engines):
    result = engines["mono"].generate("x", GenerateSettings(duration=2.0, seed=1, window_s=1.0, context_s=0.4))
    assert result.windows == [
        {"start_s": s / FRAME_RATE, "prompt_frames": k, "new_frames": n} for s, k, n in audiocraft_windows(2.0, 1.0, 0.6)
    ]
    assert sum(w["new_frames"] for w in result.windows) == result.codes.shape[-1] == 100


def test_melody_moves_forward_with_each_window(engines, tmp_path):
    t = np.arange(RATE) / RATE
    a, c = np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 523.25 * t)
    moving, steady = tmp_path / "a-then-c.wav", tmp_path / "a-a.wav"
    sf.write(moving, (0.5 * np.concatenate([a, c])).astype(np.float32), RATE)
    sf.write(steady, (0.5 * np.concatenate([a, a])).astype(np.float32), RATE)
    settings = GenerateSettings(duration=2.0, greedy=True, window_s=1.0, context_s=0.4)
    one = engines["melody"].generate("piano", GenerateSettings(**{**settings.__dict__, "melody": moving})).codes
    two = engines["melody"].generate("piano", GenerateSettings(**{**settings.__dict__, "melody": steady})).codes
    # Window 0 covers 0-1 s (A in both melodies); later windows start at 0.6 s and 1.2 s, where
    # they differ. Giving every window the melody's beginning would make the runs agree throughout.
    assert one.shape == two.shape == (1, 4, 100)
    assert np.array_equal(one[..., :50], two[..., :50])
    assert not np.array_equal(one[..., 50:], two[..., 50:])


def test_continuation_keeps_or_drops_the_prompt(engines, tmp_path):
    given = tmp_path / "given.wav"
    sf.write(given, np.random.default_rng(0).uniform(-0.3, 0.3, RATE // 2).astype(np.float32), RATE)  # 0.5 s
    mg = engines["mono"]
    whole = mg.generate("jazz", GenerateSettings(duration=1.0, seed=2, continuation=given)).clips[0]
    new = mg.generate("jazz", GenerateSettings(duration=1.0, seed=2, continuation=given, keep_prompt=False)).clips[0]
    assert whole.shape == (1, int(1.5 * RATE)) and new.shape == (1, RATE)  # --duration counts new audio only
    assert np.array_equal(whole[:, RATE // 2 :], new)
