"""Long-form composition: timed sections with their own prompts, endings that end, loops,
and no dead tails.

A piece is made section by section. Each section starts a new window at its start time,
conditioned on its own prompt and on the last `context_s` of what came before, so the music
carries on across the change; a section longer than a window goes on in windows with the same
prompt. The piece's last window is generated on its own, so that it alone can be shaped
(an outro cue, the opening's prompt for a loop) and re-rolled with the next seed when the
piece ends in silence. With one section, no cue and no re-roll, the tokens are exactly those
of a plain `generate` with the same seed: the windows fall in the same places.
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
    """One call of the windowed generator: a run of frames under one prompt."""

    section: int
    frames: int
    prompt: str


@dataclass
class _Record:
    sections: list[dict] = field(default_factory=list)
    rerolls: list[dict] = field(default_factory=list)


def tail_loudness(clip: np.ndarray, sample_rate: int, seconds: float) -> float:
    """Loudness (LUFS, ITU-R BS.1770) of the clip's last `seconds`; -inf for silence."""
    return audio.integrated_loudness(clip[:, -max(1, round(seconds * sample_rate)):], sample_rate)


def compose(mg, prompt: str, settings, seed: int, prompt_audio=None, melody_audio=None) -> dict:
    """The fields of a `GenerationResult` for a sectioned / ended / looped piece (`prompt_audio`
    and `melody_audio` as `MusicGen.generate` takes them)."""
    from musicgen_cli.decode.windows import engine_for, window_plan, window_starts
    from musicgen_cli.engine.melody import melody_batch

    report = mg.reporter
    fr = mg.frame_rate
    n = settings.num_samples
    crossfade = LOOP_CROSSFADE_S if settings.loop else 0.0
    total = max(1, round((settings.duration + crossfade) * fr))
    window, context = int(settings.window_s * fr), int(settings.context_s * fr)
    sections = settings.segments or ((0.0, prompt),)
    bounds = [round(start * fr) for start, _ in sections] + [total]
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    report.phase("encode text", f"{len(sections)} section(s)")
    melodies = mg._melody_waves(settings, n, melody_audio)
    codes = mg._continuation_codes(settings, n, prompt_audio)
    timings["encode"] = time.perf_counter() - t0
    prompt_frames = 0 if codes is None else codes.shape[-1]

    chroma_frames = getattr(mg.model.config, "chroma_length", 0)
    pieces = [_Piece(i, bounds[i + 1] - bounds[i], text) for i, (_, text) in enumerate(sections)]
    last = pieces[-1]
    have = prompt_frames + total - last.frames
    last_new = window_plan(min(have, context), last.frames, window, context)[-1][1]
    tail_prompt = sections[0][1] if settings.loop else last.prompt
    if settings.ending == "outro":
        tail_prompt += OUTRO_CUE
    if last_new < last.frames:
        pieces[-1] = _Piece(last.section, last.frames - last_new, last.prompt)
        pieces.append(_Piece(last.section, last_new, tail_prompt))
    else:
        pieces[-1] = _Piece(last.section, last.frames, tail_prompt)

    record = _Record()
    for i, (start, text) in enumerate(sections):
        end = bounds[i + 1] / fr
        record.sections.append({"start_s": start, "end_s": end, "prompt": text, "windows": []})
    progress = StepProgress(report, total, fr)

    def run(piece: _Piece, so_far: torch.Tensor | None) -> torch.Tensor:
        from musicgen_cli.decode.windows import generate_codes

        start, end = sections[piece.section][0], bounds[piece.section + 1] / fr
        report.phase(f"section {piece.section + 1}/{len(sections)}", f"{format_time(start)}-{format_time(end)} {piece.prompt}")
        kept = 0 if so_far is None else min(so_far.shape[-1], context)
        offset = (0 if so_far is None else so_far.shape[-1]) - kept  # where this call's frame 0 is in the piece
        plan = window_plan(kept, piece.frames, window, context)
        record.sections[piece.section]["windows"] += [
            {"start_s": (offset + at) / fr, "context_frames": k, "new_frames": f, "prompt": piece.prompt}
            for at, (k, f) in zip(window_starts(plan, kept), plan)
        ]

        def melody_for(start: int) -> torch.Tensor:
            # Each window reads the melody from its own start in the whole piece (audiocraft's rule).
            return melody_batch(melodies, mg.sample_rate, chroma_frames, (offset + start) / fr, settings.window_s)
        ids, mask = mg._tokenize([piece.prompt] * n)
        out = generate_codes(
            mg.model, input_ids=ids, attention_mask=mask, num_frames=piece.frames, sampling=mg.sampling(settings),
            prompt_codes=None if kept == 0 else so_far[..., -kept:], engine=settings.engine,
            melody_for=None if melodies is None else melody_for,
            on_step=progress.step(piece.frames), window_frames=window, context_frames=context,
        ).cpu()
        progress.done += piece.frames
        new = out[..., -piece.frames:]
        return new if so_far is None else torch.cat([so_far, new], dim=-1)

    report.phase("generate", f"{settings.duration:g} s in {len(sections)} section(s), {n} clip(s), seed {seed}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    try:
        for piece in pieces[:-1]:
            codes = run(piece, codes)
        body = codes
        codes = run(pieces[-1], body)
        timings["generate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        wave = codec.decode(mg.model, codes, mg.plan.codec_chunk_s)
        timings["decode"] = time.perf_counter() - t0
        codes, wave = _reroll_dead_tails(mg, settings, seed, body, pieces[-1], codes, wave, run, progress, record)
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped after about {progress.current / fr:.1f} s of {settings.duration:g} s of audio; nothing was written",
            "run again, or ask for a shorter --duration",
        ) from None

    clips = [_finish(clip, mg.sample_rate, settings) for clip in mg._clips(wave, prompt_frames, settings, crossfade)]
    composition = {
        "sections": record.sections,
        "ending": settings.ending,
        "rerolls": record.rerolls,
        "tail_silence": {"threshold_lufs": settings.tail_silence_db, "seconds": settings.tail_silence_s},
        "loop": {"start_sample": 0, "end_sample": int(clips[0].shape[-1]), "crossfade_s": crossfade} if settings.loop else None,
    }
    return dict(
        clips=clips, sample_rate=mg.sample_rate, prompts=[p for _, p in sections][:1] * n, seed=seed,
        settings=settings, timings=timings, steps=progress.steps, peaks=progress.finish(), composition=composition, codes=codes,
        windows=[w for section in record.sections for w in section["windows"]], engine=engine_for(mg.model, settings.engine),
    )


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
