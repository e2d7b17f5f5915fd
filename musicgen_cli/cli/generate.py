"""`mgen generate`: one prompt (or several takes) to audio files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from musicgen_cli.arch import CONTEXT_SECONDS
from musicgen_cli.cli import options as audio_flags  # the shared audio output options
from musicgen_cli.cli.options import (
    CacheDirOpt,
    CoresOpt,
    DeviceOpt,
    GpuMemOpt,
    JsonOpt,
    MaxVramOpt,
    NoGpuOpt,
    RamOpt,
    ReserveOpt,
    console,
    err_console,
    machine_for,
    reporter_for,
)
from musicgen_cli.errors import MgenError
from musicgen_cli.ui.panel import human_bytes


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


def generate_cmd(
    prompt: Optional[str] = typer.Argument(None, help="What to play, e.g. \"a 30-second grand piano jazz trio with bass and drums\"."),
    size: Optional[str] = typer.Option(None, "--size", help="Model size: small, medium, large (or any manifest key)."),
    model_key: Optional[str] = typer.Option(None, "--model-key", "-m", help="Manifest key, repo id, or model folder. See `mgen models`."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="Read the prompt from a text file."),
    lyrics: Optional[Path] = typer.Option(None, "--lyrics", help="Lyrics file: its title names the output and its themes steer the style (MusicGen cannot sing words)."),
    duration: float = typer.Option(10.0, "--duration", "-d", help="Seconds of new audio (a --continue prompt is extra). Longer than 30 s is generated in windows."),
    num_samples: int = typer.Option(1, "--num-samples", "-n", help="Samples to generate in one batched pass."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed; the same seed and settings give the same audio."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature."),
    top_k: int = typer.Option(250, "--top-k", help="Sample among the k most likely codes (MusicGen's default 250)."),
    top_p: float = typer.Option(0.0, "--top-p", help="Nucleus sampling threshold; 0 turns it off."),
    guidance: float = typer.Option(3.0, "--guidance", help="Classifier-free guidance scale; 1 turns it off."),
    greedy: bool = typer.Option(False, "--greedy", help="Pick the most likely code at each step (deterministic, dull)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: output/<slug of the prompt>.<format>)."),
    fmt: Optional[str] = audio_flags.FormatOpt,
    subtype: Optional[str] = audio_flags.SubtypeOpt,
    normalize: str = audio_flags.NormalizeOpt,
    peak_headroom_db: float = audio_flags.PeakHeadroomOpt,
    rms_headroom_db: float = audio_flags.RmsHeadroomOpt,
    loudness_headroom_db: float = audio_flags.LoudnessHeadroomOpt,
    loudness_compressor: bool = audio_flags.LoudnessCompressorOpt,
    mp3_bitrate: int = audio_flags.Mp3BitrateOpt,
    fade_in: float = audio_flags.FadeInOpt,
    fade_out: float = audio_flags.FadeOutOpt,
    keep_prompt: bool = typer.Option(True, "--keep-prompt/--no-keep-prompt", help="With --continue: write the given audio then the new part, or only the new part."),
    from_sidecar: Optional[Path] = typer.Option(None, "--from-sidecar", help="Re-run the clip a sidecar .json describes (same model, prompt, seed, settings, levels)."),
    continue_from: Optional[Path] = typer.Option(None, "--continue", help="Continue this audio file (its codes prompt the model)."),
    melody_file: Optional[Path] = typer.Option(None, "--melody", help="Melody to follow (melody models only)."),
    window: float = typer.Option(30.0, "--window", help="Seconds per generation window for long clips."),
    context: float = typer.Option(CONTEXT_SECONDS, "--context", help="Seconds of the previous window that prompt the next one (12: audiocraft's extend_stride 18)."),
    engine: str = typer.Option("fast", "--engine", help="fast (mgen's static-cache loop) or reference (transformers' generate)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: weight-only int8 decoder (faster on CPU, small quality cost)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: planned for the device)."),
    device: str = DeviceOpt,
    gpu_mem: Optional[list[str]] = GpuMemOpt,
    ram: Optional[str] = RamOpt,
    cores: Optional[int] = CoresOpt,
    no_gpu: bool = NoGpuOpt,
    reserve: Optional[str] = ReserveOpt,
    max_vram: Optional[str] = MaxVramOpt,
    num_threads: Optional[int] = typer.Option(None, "--num-threads", help="CPU threads for torch (intra- and inter-op)."),
    cpu_util_target: Optional[float] = typer.Option(None, "--cpu-util-target", help="Fraction of logical cores to use, e.g. 0.8."),
    offline: bool = typer.Option(False, "--offline", help="Never download; fail with the command that would."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the output paths."),
    as_json: bool = JsonOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Generate music from a text prompt and write WAV files with a JSON sidecar each.

    Examples:

      mgen generate "lofi hip hop beat" --duration 8

      mgen generate --size medium -n 3 --seed 7 "a 30-second grand piano jazz trio"

      mgen generate --model-key melody --melody tune.wav "orchestral version"

      mgen generate -d 20 --normalize loudness --fade-out 3 --out song.mp3 "synthwave"

      mgen generate --from-sidecar song.json --out again.mp3
    """
    from dataclasses import replace

    from musicgen_cli.engine.audio import FORMATS, choose_format
    from musicgen_cli.engine.musicgen import GenerateSettings, load_model
    from musicgen_cli.jobs.outputs import output_paths, write_result
    from musicgen_cli.planning.planner import Job

    if size and model_key:
        raise MgenError("give --size or --model-key, not both", "drop one of them")
    if quantize not in (None, "none", "int8"):
        raise MgenError(f"unknown quantisation {quantize!r}", "use --quantize int8")
    options = audio_flags.audio_options(choose_format(out, fmt), subtype, normalize, peak_headroom_db, rms_headroom_db,
                                        loudness_headroom_db, loudness_compressor, mp3_bitrate, fade_in, fade_out)
    replay = None
    if from_sidecar:
        from musicgen_cli.jobs.replay import check_weights, read_replay

        replay = read_replay(from_sidecar)
        check_weights(replay, replay.model)
        text = hint = replay.prompt
        settings, model_key, size, dtype, quantize = replay.settings, replay.model, None, replay.dtype, replay.quantize
        recorded = replay.options
        named = out is not None and out.suffix.lstrip(".").lower() in FORMATS  # else keep the recorded format
        chosen = choose_format(out, fmt) if fmt or named else recorded.format
        options = replace(recorded, format=chosen, subtype=recorded.subtype if chosen == recorded.format else None).validate()
        duration, num_samples, window, guidance = settings.duration, settings.num_samples, settings.window_s, settings.guidance
        device = replay.device if device == "auto" else device
    else:
        text, hint = _resolve_prompt(prompt, prompt_file, lyrics)
        settings = GenerateSettings(
            duration=duration,
            num_samples=num_samples,
            seed=seed,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            guidance=guidance,
            greedy=greedy,
            engine=engine,
            window_s=window,
            context_s=context,
            continuation=continue_from,
            melody=melody_file,
            keep_prompt=keep_prompt,
        )
    if max(options.fade_in_s, options.fade_out_s) > duration and not settings.continuation:
        raise MgenError(f"a fade is longer than the {duration:g} s clip", "shorten --fade-in/--fade-out")
    paths = output_paths(out, hint, 1 if replay else num_samples, options.format)
    from musicgen_cli.planning.hardware import configure_threads, parse_size

    threads = configure_threads(num_threads, cpu_util_target)
    machine = machine_for(cache_dir, gpu_mem, ram, cores, no_gpu, device)
    with reporter_for(quiet or as_json) as reporter:
        mg = load_model(
            size or model_key or "small",
            cache_dir=cache_dir,
            job=Job(duration_s=min(duration, window), num_samples=num_samples, guidance=guidance > 1, window_s=window),
            machine=machine,
            dtype=dtype,
            quantize=None if quantize == "none" else quantize,
            reserve_bytes=parse_size(reserve) if reserve else None,
            max_vram_bytes=parse_size(max_vram) if max_vram else None,
            download=not offline,
            reporter=reporter,
        )
        if replay:
            check_weights(replay, mg.folder)
        result = mg.generate(text, settings)
        if replay:  # the whole batch is re-run (its RNG draws are shared); the recorded take is kept
            keep = replay.sample_index
            result = replace(result, clips=result.clips[keep : keep + 1], prompts=result.prompts[keep : keep + 1])
        reporter.phase("write", str(paths[0].parent))
        extra = {"sample_index": replay.sample_index, "num_samples": settings.num_samples} if replay else {}
        written = write_result(result, mg, paths, options=options, extra={"torch_threads": threads, **extra})
    for path in written:  # --normalize none/rms/loudness can clip: say so rather than hide it
        clipped = json.loads(path.with_suffix(".json").read_text())["audio"]["clipped_samples"]
        if clipped:
            err_console.print(f"[yellow]note:[/] {clipped} samples of {path.name} were clipped at full scale "
                              "(--normalize peak avoids it; --subtype FLOAT keeps them)", highlight=False)
    if as_json:
        print(json.dumps({"files": [str(p) for p in written], "seed": result.seed, "timings_s": result.timings,
                          "steps_per_s": result.steps_per_s, "realtime_factor": result.realtime_factor}, indent=2))
    elif quiet:
        for path in written:
            print(path)
    else:
        for path in written:
            console.print(f"[green]wrote[/] {path}  (+ {path.with_suffix('.json').name})", highlight=False)
        spent = result.timings["generate"] + result.timings["decode"]
        console.print(
            f"{duration:g} s of audio x {len(written)} in {spent:.1f} s: {result.steps_per_s:.1f} steps/s, "
            f"{result.realtime_factor:.2f}x real time, peak RAM {human_bytes(result.peaks.get('rss_bytes'))}"
            + (f", peak VRAM {human_bytes(result.peaks['vram_bytes'])}" if result.peaks.get("vram_bytes") else ""),
            highlight=False,
        )
