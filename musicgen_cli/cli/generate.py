"""`mgen generate`: one prompt (or several takes) to audio files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from musicgen_cli.cli.options import (
    DEFAULTS,
    CacheDirOpt,
    DurationOpt,
    JsonOpt,
    MachineOptions,
    NumSamplesOpt,
    OfflineOpt,
    OutputOptions,
    SamplingOptions,
    WindowOpt,
    console,
    err_console,
    reporter_for,
    uses,
)
from musicgen_cli.errors import MgenError
from musicgen_cli.ui.panel import result_summary


def _resolve_prompt(prompt: Optional[str], prompt_file: Optional[Path], lyrics: Optional[Path]):
    """The text conditioning and the output name hint (lyrics title when lyrics are given)."""
    from musicgen_cli.engine.prompts import (
        LYRICS_NOTICE,
        fold_lyrics,
        read_lyrics,
        read_text_file,
    )

    if prompt and prompt_file:
        raise MgenError("give the prompt as an argument or with --prompt-file, not both", "drop one of them")
    text = read_text_file(prompt_file, "prompt") if prompt_file else (prompt or "")
    hint = text
    if lyrics:
        song = read_lyrics(lyrics)
        err_console.print(f"[yellow]note:[/] {LYRICS_NOTICE}")
        text, hint = fold_lyrics(text, song), song.title
    if not text.strip():
        raise MgenError("no prompt given", 'pass one: mgen generate "a calm lofi beat", or use --prompt-file')
    return text, hint


def _report(result, written: list[Path], as_json: bool, quiet: bool) -> None:
    """What was written and what it cost: JSON, bare paths, or a line per file and a summary."""
    if as_json:
        print(json.dumps({"files": [str(p) for p in written], "seed": result.seed, "timings_s": result.timings,
                          "steps_per_s": result.steps_per_s, "realtime_factor": result.realtime_factor}, indent=2))
        return
    if quiet:
        for path in written:
            print(path)
        return
    for path in written:
        console.print(f"[green]wrote[/] {path}  (+ {path.with_suffix('.json').name})", highlight=False)
    console.print(result_summary(result), highlight=False)


def _note_clipping(written: list[Path]) -> None:
    """--normalize none/rms/loudness can clip: say so rather than hide it."""
    for path in written:
        clipped = json.loads(path.with_suffix(".json").read_text())["audio"]["clipped_samples"]
        if clipped:
            err_console.print(f"[yellow]note:[/] {clipped} samples of {path.name} were clipped at full scale "
                              "(--normalize peak avoids it; --subtype FLOAT keeps them)", highlight=False)


def _replayed(from_sidecar: Path, out: Optional[Path], fmt: Optional[str], device: str):
    """What `--from-sidecar` re-runs: the recorded prompt, model, settings and levels (the
    format may change with --format or an --out suffix)."""
    from dataclasses import replace

    from musicgen_cli.engine.audio import FORMATS, choose_format
    from musicgen_cli.jobs.replay import check_weights, read_replay

    replay = read_replay(from_sidecar)
    check_weights(replay, replay.model)
    recorded = replay.options
    named = out is not None and out.suffix.lstrip(".").lower() in FORMATS  # else keep the recorded format
    chosen = choose_format(out, fmt) if fmt or named else recorded.format
    options = replace(recorded, format=chosen, subtype=recorded.subtype if chosen == recorded.format else None).validate()
    return replay, options


@uses(machine=MachineOptions, sampling=SamplingOptions, output=OutputOptions)
def generate_cmd(
    prompt: Optional[str] = typer.Argument(None, help="What to play, e.g. \"a 30-second grand piano jazz trio with bass and drums\"."),
    size: Optional[str] = typer.Option(None, "--size", help="Model size: small, medium, large (or any manifest key)."),
    model_key: Optional[str] = typer.Option(None, "--model-key", "-m", help="Manifest key, repo id, or model folder. See `mgen models`."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="Read the prompt from a text file."),
    lyrics: Optional[Path] = typer.Option(None, "--lyrics", help="Lyrics file: its title names the output and its themes steer the style (MusicGen cannot sing words)."),
    duration: float = DurationOpt,
    num_samples: int = NumSamplesOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file; its suffix picks the format (default: output/<slug of the prompt>.<format>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (and their sidecars)."),
    continue_from: Optional[Path] = typer.Option(None, "--continue", help="Continue this audio file (its codes prompt the model)."),
    keep_prompt: bool = typer.Option(DEFAULTS.keep_prompt, "--keep-prompt/--no-keep-prompt", help="With --continue: write the given audio then the new part, or only the new part."),
    melody_file: Optional[Path] = typer.Option(None, "--melody", help="Melody to follow (melody models only)."),
    from_sidecar: Optional[Path] = typer.Option(None, "--from-sidecar", help="Re-run the clip a sidecar .json describes (same model, prompt, seed, settings, levels)."),
    segments: Optional[Path] = typer.Option(None, "--segments", help="Sections file, one `M:SS prompt` line per section and a last `M:SS end`: the piece develops section by section.", rich_help_panel="Long form"),
    ending: str = typer.Option(DEFAULTS.ending, "--ending", help="cut; fade (over the last 4 s); outro (the last window is asked to end, then a 0.5 s fade).", rich_help_panel="Long form"),
    loop: bool = typer.Option(DEFAULTS.loop, "--loop", help="A seamless loop: the last window returns to the opening prompt and its end is crossfaded (1 s) into the start.", rich_help_panel="Long form"),
    max_rerolls: int = typer.Option(DEFAULTS.max_rerolls, "--max-rerolls", help="Regenerate the last window with the next seed, up to this many times, when a composed piece ends in silence.", rich_help_panel="Long form"),
    tail_silence_db: float = typer.Option(DEFAULTS.tail_silence_db, "--tail-silence-db", help="A tail quieter than this (LUFS) is silence.", rich_help_panel="Long form"),
    tail_silence_s: float = typer.Option(DEFAULTS.tail_silence_s, "--tail-silence-s", help="Seconds at the end that are checked for silence.", rich_help_panel="Long form"),
    window: float = WindowOpt,
    context: float = typer.Option(DEFAULTS.context_s, "--context", help="Seconds of the previous window that prompt the next one (12: audiocraft's extend_stride 18)."),
    offline: bool = OfflineOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the output paths."),
    as_json: bool = JsonOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    *,
    machine: MachineOptions,
    sampling: SamplingOptions,
    output: OutputOptions,
) -> None:
    """Generate music from a text prompt and write audio files with a JSON sidecar each.

    Examples:

      mgen generate "lofi hip hop beat" --duration 8

      mgen generate --size medium -n 3 --seed 7 "a 30-second grand piano jazz trio"

      mgen generate --model-key melody --melody tune.wav "orchestral version"

      mgen generate -d 20 --normalize loudness --fade-out 3 --out song.mp3 "synthwave"

      mgen generate --from-sidecar song.json --out again.mp3

      mgen generate --segments piece.txt --ending outro
    """
    from dataclasses import replace

    from musicgen_cli.engine.musicgen import load_model
    from musicgen_cli.engine.segments import read_segments
    from musicgen_cli.jobs.outputs import output_paths, write_result

    if size and model_key:
        raise MgenError("give --size or --model-key, not both", "drop one of them")
    plan_kwargs = machine.plan_kwargs()
    replay = None
    if from_sidecar:
        replay, options = _replayed(from_sidecar, out, output.fmt, machine.device)
        text = hint = replay.prompt
        settings, size, model_key = replay.settings, None, replay.model
        plan_kwargs.update(dtype=replay.dtype, quantize=replay.quantize)
        machine = replace(machine, device=replay.device if machine.device == "auto" else machine.device)
    else:
        options = output.audio(out)
        sections = read_segments(segments) if segments else None
        if sections:
            duration = sections.end_s or duration
            prompt = prompt or (None if prompt_file else sections.sections[0][1])
        text, hint = _resolve_prompt(prompt, prompt_file, lyrics)
        settings = sampling.settings(
            duration=duration, num_samples=num_samples, window_s=window, context_s=context, continuation=continue_from,
            melody=melody_file, keep_prompt=keep_prompt, segments=sections.sections if sections else None, ending=ending,
            loop=loop, max_rerolls=max_rerolls, tail_silence_db=tail_silence_db, tail_silence_s=tail_silence_s,
        )
    settings.validate(max_window_s=float("inf"))  # the model's own limit is checked again once loaded
    if max(options.fade_in_s, options.fade_out_s) > settings.duration and not settings.continuation:
        raise MgenError(f"a fade is longer than the {settings.duration:g} s clip", "shorten --fade-in/--fade-out")
    paths = output_paths(out, hint, 1 if replay else settings.num_samples, options.format, overwrite=overwrite)
    threads = machine.threads()
    where = machine.machine(cache_dir)
    with reporter_for(quiet or as_json) as reporter:
        mg = load_model(
            size or model_key or "small", cache_dir=cache_dir, settings=settings, machine=where, download=not offline, reporter=reporter,
            **plan_kwargs,
        )
        if replay:
            from musicgen_cli.jobs.replay import check_weights

            check_weights(replay, mg.folder)
        result = mg.generate(text, settings)
        extra = {"torch_threads": threads}
        if replay:  # the whole batch is re-run (its RNG draws are shared); the recorded take is kept
            keep = replay.sample_index
            result = replace(result, clips=result.clips[keep : keep + 1], prompts=result.prompts[keep : keep + 1])
            extra.update(sample_index=replay.sample_index, num_samples=settings.num_samples)
        reporter.phase("write", str(paths[0].parent))
        written = write_result(result, mg, paths, options=options, extra=extra, overwrite=overwrite)
    _note_clipping(written)
    _report(result, written, as_json, quiet)
