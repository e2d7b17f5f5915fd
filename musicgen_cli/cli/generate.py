"""`mgen generate`: one prompt (or several takes) to audio files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

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
    duration: float = typer.Option(10.0, "--duration", "-d", help="Seconds of audio. Longer than 30 s is generated in windows."),
    num_samples: int = typer.Option(1, "--num-samples", "-n", help="Samples to generate in one batched pass."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed; the same seed and settings give the same audio."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature."),
    top_k: int = typer.Option(250, "--top-k", help="Sample among the k most likely codes (MusicGen's default 250)."),
    top_p: float = typer.Option(0.0, "--top-p", help="Nucleus sampling threshold; 0 turns it off."),
    guidance: float = typer.Option(3.0, "--guidance", help="Classifier-free guidance scale; 1 turns it off."),
    greedy: bool = typer.Option(False, "--greedy", help="Pick the most likely code at each step (deterministic, dull)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: output/<slug of the prompt>.<format>)."),
    fmt: str = typer.Option("wav", "--format", help="wav, flac or ogg."),
    subtype: Optional[str] = typer.Option(None, "--subtype", help="Sample format, e.g. PCM_16 (default), PCM_24, FLOAT."),
    normalize: str = typer.Option("peak", "--normalize", help="peak, loudness or none (never clips)."),
    continue_from: Optional[Path] = typer.Option(None, "--continue", help="Continue this audio file (its codes prompt the model)."),
    melody_file: Optional[Path] = typer.Option(None, "--melody", help="Melody to follow (melody models only)."),
    window: float = typer.Option(30.0, "--window", help="Seconds per generation window for long clips."),
    context: float = typer.Option(10.0, "--context", help="Seconds of the previous window that prompt the next one."),
    engine: str = typer.Option("fast", "--engine", help="fast (mgen's static-cache loop) or reference (transformers' generate)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8 or int4 (CPU): reduced-precision decoder, faster on CPU at a measured quality cost (memory-plan shows both)."),
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
    """
    from musicgen_cli.engine.musicgen import GenerateSettings, load_model
    from musicgen_cli.jobs.outputs import output_paths, write_result
    from musicgen_cli.planning.planner import Job

    if size and model_key:
        raise MgenError("give --size or --model-key, not both", "drop one of them")
    text, hint = _resolve_prompt(prompt, prompt_file, lyrics)
    if quantize not in (None, "none", "int8", "int4"):
        raise MgenError(f"unknown quantisation {quantize!r}", "use --quantize int8 or --quantize int4")
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
    )
    paths = output_paths(out, hint, num_samples, fmt.lower())
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
        result = mg.generate(text, settings)
        reporter.phase("write", str(paths[0].parent))
        written = write_result(result, mg, paths, subtype=subtype, normalize=normalize, extra={"torch_threads": threads})
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
