"""The one windowed loop: every generation, a plain clip or a long-form piece, is made here.

A plain clip is a one-section piece. A piece is made section by section. Each section starts
a new window at its start time, conditioned on its own prompt and on what came before (the
window plan keeps all of it while it fits one window, then the last `context_s`), so the music
carries on across the change; a section longer than a window goes on in windows with the same
prompt. A shaped piece's last window (an ending, a loop) is generated on its own, so that it
alone can be shaped (an outro cue, the opening's prompt for a loop) and re-rolled with the next
seed when the piece ends in silence. The windows fall in the same places whatever the pieces,
so an unshaped piece has the tokens of a plain clip with the same seed. The codes are decoded
once at the end so the audio has no seams.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from musicgen_cli.engine import audio, codec
from musicgen_cli.engine.progress import StepProgress
from musicgen_cli.engine.segments import LOOP_CROSSFADE_S, format_time
from musicgen_cli.errors import Interrupted

OUTRO_CUE = ", final chord, ending"
ENDING_FADE_S = 4.0  # --ending fade: the last seconds fade to silence
OUTRO_FADE_S = 0.5  # --ending outro: the music ends itself; only its very end is faded


@dataclass
class _Piece:
    """One call of the windowed generator: a run of frames under one text per row."""

    section: int
    frames: int
    texts: list[str]


@dataclass
class _Record:
    sections: list[dict] = field(default_factory=list)
    rerolls: list[dict] = field(default_factory=list)


def tail_loudness(clip: np.ndarray, sample_rate: int, seconds: float) -> float:
    """Loudness (LUFS, ITU-R BS.1770) of the clip's last `seconds`; -inf for silence."""
    return audio.integrated_loudness(clip[:, -max(1, round(seconds * sample_rate)):], sample_rate)


def compose(mg, prompts: list[str], settings, seed: int, prompt_audio=None, melody_audio=None) -> dict:
    """The fields of a `GenerationResult`: `settings.num_samples` clips of each prompt (a shaped
    piece takes one prompt or a sections file); `prompt_audio` and `melody_audio` as
    `MusicGen.generate` takes them."""
    from musicgen_cli.decode.windows import engine_for

    report = mg.reporter
    fr = mg.frame_rate
    rows = [p for p in prompts for _ in range(settings.num_samples)]
    crossfade = LOOP_CROSSFADE_S if settings.loop else 0.0
    total = max(1, round((settings.duration + crossfade) * fr))
    window, context = int(settings.window_s * fr), int(settings.context_s * fr)
    sections = settings.segments or ((0.0, None),)  # None: each row's own prompt
    bounds = [round(start * fr) for start, _ in sections] + [total]
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    report.phase("encode text", f"{len(sections)} section(s)" if settings.segments else
                 prompts[0] if len(prompts) == 1 else f"{len(prompts)} prompts")
    melodies = mg.melody_waves(settings, len(rows), melody_audio)
    codes = mg.continuation_codes(settings, len(rows), prompt_audio)
    timings["encode"] = time.perf_counter() - t0
    prompt_frames = 0 if codes is None else codes.shape[-1]

    def texts(text: str | None) -> list[str]:
        return list(rows) if text is None else [text] * len(rows)

    pieces = [_Piece(i, bounds[i + 1] - bounds[i], texts(text)) for i, (_, text) in enumerate(sections)]
    if settings.composed:
        pieces = _split_tail(pieces, settings, prompt_frames + total, window, context)
    record = _Record()
    for i, (start, text) in enumerate(sections):
        record.sections.append({"start_s": start, "end_s": bounds[i + 1] / fr, "prompt": text or rows[0], "windows": []})
    progress = StepProgress(report, total, fr)
    run = _runner(mg, settings, sections, bounds, melodies, prompt_frames + total <= window, record, progress)

    report.phase("generate", f"{settings.duration:g} s" + (f" in {len(sections)} section(s)" if settings.segments else "")
                 + f", {len(rows)} clip(s), seed {seed}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    try:
        for piece in pieces[:-1]:
            codes = run(piece, codes)
        body = codes
        codes = run(pieces[-1], body)
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped after about {progress.current / fr:.1f} s of {settings.duration:g} s of audio; nothing was written",
            "run again, or ask for a shorter --duration",
        ) from None
    timings["generate"] = time.perf_counter() - t0
    report.phase("decode audio", f"{codes.shape[-1]} frames")
    t0 = time.perf_counter()
    try:
        wave = codec.decode(mg.model, codes, mg.plan.codec_chunk_s)
    except KeyboardInterrupt:
        raise Interrupted("stopped while decoding audio; nothing was written", "run again") from None
    timings["decode"] = time.perf_counter() - t0
    if settings.composed:
        try:
            codes, wave = _reroll_dead_tails(mg, settings, seed, body, pieces[-1], codes, wave, run, progress, record)
        except KeyboardInterrupt:
            raise Interrupted("stopped while re-rolling a silent ending; nothing was written", "run again, or use --max-rerolls 0") from None
    t0 = time.perf_counter()
    try:
        wave, decoder = mg.decode(codes, settings, seed, wave)  # the kept codes, by the asked decoder
    except KeyboardInterrupt:
        raise Interrupted("stopped while decoding audio; nothing was written", "run again") from None
    timings["decode"] += time.perf_counter() - t0

    clips = [_finish(clip, mg.sample_rate, settings) for clip in mg.trim_clips(wave, prompt_frames, settings, crossfade)]
    windows = [w for section in record.sections for w in section["windows"]]
    composition = {
        "sections": record.sections,
        "ending": settings.ending,
        "rerolls": record.rerolls,
        "tail_silence": {"threshold_lufs": settings.tail_silence_db, "seconds": settings.tail_silence_s},
        "loop": {"start_sample": 0, "end_sample": int(clips[0].shape[-1]), "crossfade_s": crossfade} if settings.loop else None,
    }
    return dict(
        clips=clips, sample_rate=mg.sample_rate, prompts=texts(sections[0][1]), seed=seed, settings=settings, timings=timings,
        steps=progress.steps, peaks=progress.finish(), composition=composition if settings.composed else None, codes=codes,
        windows=[{"start_s": w["start_s"], "prompt_frames": w["context_frames"], "new_frames": w["new_frames"]} for w in windows],
        engine=engine_for(mg.model, settings.engine), decoder=decoder,
    )


def _split_tail(pieces: list[_Piece], settings, have_all: int, window: int, context: int) -> list[_Piece]:
    """The pieces with the last window of the last one apart, under the ending's text: the
    opening's for a loop, the section's own with an outro cue for `--ending outro`."""
    from musicgen_cli.decode.windows import window_plan

    last = pieces[-1]
    last_new = window_plan(have_all - last.frames, last.frames, window, context)[-1][1]
    tail = pieces[0].texts if settings.loop else last.texts
    if settings.ending == "outro":
        tail = [text + OUTRO_CUE for text in tail]
    if last_new < last.frames:
        return [*pieces[:-1], _Piece(last.section, last.frames - last_new, last.texts), _Piece(last.section, last_new, tail)]
    return [*pieces[:-1], _Piece(last.section, last.frames, tail)]


def _runner(mg, settings, sections, bounds, melodies, one_window: bool, record: _Record, progress: StepProgress):
    """`run(piece, so_far)`: the codes so far with `piece`'s frames generated after them."""
    from musicgen_cli.decode.windows import generate_codes, window_plan, window_starts
    from musicgen_cli.engine.melody import melody_batch

    fr = mg.frame_rate
    window, context = int(settings.window_s * fr), int(settings.context_s * fr)
    chroma_frames = getattr(mg.model.config, "chroma_length", 0)
    tokens: dict[tuple[str, ...], tuple] = {}

    def melody_for(start: int) -> torch.Tensor:
        # One window: the melody from its beginning; several: from each window's start in the piece, looped.
        return melody_batch(melodies, mg.sample_rate, chroma_frames, None if one_window else start / fr, window / fr)

    def run(piece: _Piece, so_far: torch.Tensor | None) -> torch.Tensor:
        if settings.segments:
            start, end = sections[piece.section][0], bounds[piece.section + 1] / fr
            report_text = f"{format_time(start)}-{format_time(end)} {piece.texts[0]}"
            mg.reporter.phase(f"section {piece.section + 1}/{len(sections)}", report_text)
        have = 0 if so_far is None else so_far.shape[-1]
        plan = window_plan(have, piece.frames, window, context)
        record.sections[piece.section]["windows"] += [
            {"start_s": at / fr, "context_frames": k, "new_frames": f, "prompt": piece.texts[0]}
            for at, (k, f) in zip(window_starts(plan, have), plan)
        ]
        if tuple(piece.texts) not in tokens:
            tokens[tuple(piece.texts)] = mg.tokenize(piece.texts)
        ids, mask = tokens[tuple(piece.texts)]
        out = generate_codes(
            mg.model, input_ids=ids, attention_mask=mask, num_frames=piece.frames, sampling=mg.sampling(settings),
            prompt_codes=so_far, engine=settings.engine, melody_for=None if melodies is None else melody_for,
            on_step=progress.step(piece.frames), window_frames=window, context_frames=context,
        ).cpu()
        progress.done += piece.frames
        return out

    return run


def _reroll_dead_tails(mg, settings, seed, body, tail_piece, codes, wave, run, progress, record):
    """Regenerate the last window with the next seeds while a clip ends in silence; keep each
    clip's loudest ending."""
    def loudness(w: torch.Tensor) -> list[float]:
        return [tail_loudness(clip.numpy(), mg.sample_rate, settings.tail_silence_s) for clip in w]

    best = loudness(wave)
    record.rerolls.append({"attempt": 0, "seed": seed, "tail_lufs": list(best)})
    for attempt in range(1, settings.max_rerolls + 1):
        if min(best) >= settings.tail_silence_db:
            break
        mg.reporter.message(f"the piece ends in silence ({min(best):.1f} LUFS): re-rolling the last window with seed {seed + attempt}")
        torch.manual_seed(seed + attempt)
        progress.done -= tail_piece.frames
        candidate = run(tail_piece, body)
        candidate_wave = codec.decode(mg.model, candidate, mg.plan.codec_chunk_s)
        scores = loudness(candidate_wave)
        record.rerolls.append({"attempt": attempt, "seed": seed + attempt, "tail_lufs": scores})
        better = [row for row, score in enumerate(scores) if score > best[row]]
        for row in better:
            best[row] = scores[row]
        if better:  # decoded audio is an inference tensor: rows are swapped in by rebuilding it
            pick = torch.tensor([row in better for row in range(len(best))])
            codes = torch.where(pick[:, None, None], candidate, codes)
            wave = torch.where(pick[:, None, None], candidate_wave, wave)
    return codes, wave


def _finish(clip: np.ndarray, sample_rate: int, settings) -> np.ndarray:
    """The ending's fade, or the loop's seam: the end crossfaded (equal power) into the opening."""
    if settings.loop:
        x = round(LOOP_CROSSFADE_S * sample_rate)
        length = clip.shape[-1] - x
        t = np.linspace(0.0, np.pi / 2, x, dtype=np.float32)
        out = clip[:, :length].copy()
        # out[-1] is clip[length-1]; out[0] becomes clip[length]: the wrap is a step of the music itself.
        out[:, :x] = clip[:, :x] * np.sin(t) + clip[:, length:] * np.cos(t)
        return out
    if settings.ending == "fade":
        return audio.fade(clip, sample_rate, 0.0, ENDING_FADE_S)
    if settings.ending == "outro":
        return audio.fade(clip, sample_rate, 0.0, OUTRO_FADE_S)
    return clip
