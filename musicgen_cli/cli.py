"""The `mgen` command line: parse options, call the engine, render with Rich."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import MgenError
from .events import NullReporter, Reporter
from .panel import GenerationPanel, human_bytes

app = typer.Typer(
    name="mgen",
    help="Run MusicGen text-to-music models on the hardware you own: plans memory, shows progress, writes WAVs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

CacheDirOpt = typer.Option(None, "--cache-dir", envvar="MGEN_CACHE_DIR", help="Model cache root (default: model-cache/ beside manifest.json).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
GpuMemOpt = typer.Option(None, "--gpu-mem", help="Simulate a GPU of this size (repeat for several), e.g. 8GiB.")
RamOpt = typer.Option(None, "--ram", help="Simulate this much RAM, e.g. 16GiB.")
CoresOpt = typer.Option(None, "--cores", help="Simulate this many CPU cores.")
NoGpuOpt = typer.Option(False, "--no-gpu", help="Plan and run as if there were no GPU.")
ReserveOpt = typer.Option(None, "--reserve", help="VRAM to leave free per GPU (default: 8 % of the card, at least 512MiB).")
MaxVramOpt = typer.Option(None, "--max-vram", help="Use at most this much VRAM per GPU.")
DeviceOpt = typer.Option("auto", "--device", help="auto (GPU when there is one), cpu, or cuda.")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"mgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Run MusicGen text-to-music models on the hardware you own.

    Start with `mgen models`, `mgen download small`, `mgen memory-plan --size small`,
    then `mgen generate "jazz trio"`.
    """


@app.command("models", rich_help_panel="Models")
def models_cmd(cache_dir: Optional[Path] = CacheDirOpt, as_json: bool = JsonOpt) -> None:
    """List the manifest's models: key, repo id, cached or not, size on disk, capabilities."""
    from .cache import folder_size
    from .manifest import load_manifest

    manifest = load_manifest(cache_dir)
    rows = []
    for entry in manifest.entries.values():
        folder = manifest.folder(entry)
        caps = entry.capabilities
        rows.append(
            {
                "key": entry.key,
                "repo_id": entry.repo_id,
                "cached": manifest.is_cached(entry),
                "size_bytes": folder_size(folder),
                "folder": str(folder),
                "melody": caps.melody,
                "stereo": caps.stereo,
                "channels": caps.channels,
                "random_weights": entry.random_weights,
                "source": entry.source,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Models (cache: {manifest.root})")
    for col in ("key", "repo id", "cached", "size", "capabilities"):
        table.add_column(col)
    for row in rows:
        caps = ["stereo" if row["stereo"] else "mono"]
        caps += ["melody"] if row["melody"] else []
        caps += ["[yellow]random weights[/]"] if row["random_weights"] else []
        table.add_row(
            row["key"],
            row["repo_id"] or "(built locally)",
            "[green]yes[/]" if row["cached"] else "no",
            human_bytes(row["size_bytes"]) if row["size_bytes"] else "-",
            ", ".join(caps),
        )
    console.print(table)


@contextmanager
def _reporter(silent: bool, title: str = "mgen generate") -> Iterator[Reporter]:
    """The live panel, or nothing for --quiet/--json."""
    if silent:
        yield NullReporter()
        return
    with GenerationPanel(err_console, title) as panel:
        yield panel


def _resolve_prompt(prompt: Optional[str], prompt_file: Optional[Path], lyrics: Optional[Path]):
    """The text conditioning and the output name hint (lyrics title when lyrics are given)."""
    from .prompts import LYRICS_NOTICE, fold_lyrics, read_lyrics, read_text_file

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


@app.command("generate", rich_help_panel="Making music")
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
    offline: bool = typer.Option(False, "--offline", envvar="HF_HUB_OFFLINE", help="Never download; fail with the command that would."),
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
    from .engine import GenerateSettings, load_model
    from .outputs import output_paths, write_result
    from .planner import Job

    if size and model_key:
        raise MgenError("give --size or --model-key, not both", "drop one of them")
    text, hint = _resolve_prompt(prompt, prompt_file, lyrics)
    if quantize not in (None, "none", "int8"):
        raise MgenError(f"unknown quantisation {quantize!r}", "use --quantize int8")
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
    from .hardware import configure_threads, parse_size

    threads = configure_threads(num_threads, cpu_util_target)
    machine = _machine_for(cache_dir, gpu_mem, ram, cores, no_gpu, device)
    with _reporter(quiet or as_json) as reporter:
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


@app.command("test-suite", rich_help_panel="Making music")
def test_suite_cmd(
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Where the WAVs and report.json go (default: /workspace if it exists, else here)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated jobs to run: small,medium,large."),
    quick: bool = typer.Option(False, "--quick", help="A few seconds per job: a smoke check of the whole set-up."),
    model_key: list[str] = typer.Option([], "--model-key", help="Model for every job (KEY) or one job (JOB=KEY); repeatable."),
    download: bool = typer.Option(False, "--download", help="Download missing models instead of skipping their jobs."),
    lyrics: Optional[Path] = typer.Option(None, "--lyrics", help="Lyrics for the large job (default: lyrics_terraform_my_heart.txt if present)."),
    large_duration: float = typer.Option(45.0, "--large-duration", help="Seconds for the large job (30-60)."),
    seed: int = typer.Option(0, "--seed", help="Seed for every job."),
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Run the three reference jobs (small 30 s, medium 30 s, large 45 s) and summarise them.

    Missing models are skipped with the command that fetches them (or fetched with --download).
    Exit code is non-zero if any job failed.
    """
    from .suite import default_out_dir, find_lyrics, parse_overrides, run_suite, select_jobs

    out_dir = (out_dir or default_out_dir()).resolve()
    jobs = select_jobs(
        [j.strip() for j in only.split(",") if j.strip()] if only else None,
        parse_overrides(model_key),
        quick,
        large_duration,
        find_lyrics(lyrics, out_dir),
    )
    machine = _machine_for(cache_dir, device=device)
    results = run_suite(
        jobs,
        out_dir,
        cache_dir=cache_dir,
        machine=machine,
        download=download,
        seed=seed,
        reporter_for=lambda job: _reporter(as_json, f"mgen test-suite: {job.name} ({job.model_key})"),
    )
    if as_json:
        from dataclasses import asdict

        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        table = Table(title=f"mgen test-suite  ({out_dir})")
        for col in ("job", "model", "asked", "produced", "wall", "steps/s", "RTF", "peak VRAM", "peak RAM", "output", "status"):
            table.add_column(col, overflow="fold")
        colour = {"ok": "green", "skipped": "yellow", "failed": "red"}
        for r in results:
            table.add_row(
                r.job, r.model, f"{r.duration_asked:g} s", f"{r.duration_produced:.1f} s", f"{r.wall_s:.1f} s",
                f"{r.steps_per_s:.1f}", f"{r.realtime_factor:.2f}", human_bytes(r.peak_vram_bytes),
                human_bytes(r.peak_ram_bytes), r.output or "-", f"[{colour[r.status]}]{r.status}[/]",
            )
        console.print(table)
        for r in results:
            if r.message:
                console.print(f"[{colour[r.status]}]{r.job}:[/] {r.message}", highlight=False)
        console.print(f"report: {out_dir / 'report.json'}")
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


@app.command("batch", rich_help_panel="Making music")
def batch_cmd(
    input_file: Path = typer.Argument(..., help="Prompts: a text file (one a line) or .jsonl (prompt, duration, seed, model, output, any generate setting)."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Folder for the WAVs, their sidecars and manifest.jsonl."),
    model_key: str = typer.Option("small", "--model-key", "-m", help="Model for lines that name none (manifest key, repo id or folder)."),
    duration: float = typer.Option(10.0, "--duration", "-d", help="Seconds of audio for lines that give none."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Base seed: item i gets BASE + i unless its line sets one (default: derived from the output name)."),
    max_batch: int = typer.Option(4, "--max-batch", help="Most items generated in one pass (lowered to what the memory plan fits); 1 makes every item reproducible from its own seed."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Generate items the manifest records as failed again."),
    processes: int = typer.Option(1, "--processes", help="Processes to launch through accelerate (one per GPU; CPU processes use gloo)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature for lines that give none."),
    top_k: int = typer.Option(250, "--top-k", help="Top-k for lines that give none."),
    top_p: float = typer.Option(0.0, "--top-p", help="Nucleus sampling threshold for lines that give none; 0 turns it off."),
    guidance: float = typer.Option(3.0, "--guidance", help="Classifier-free guidance for lines that give none."),
    greedy: bool = typer.Option(False, "--greedy", help="Greedy decoding for lines that give none."),
    engine: str = typer.Option("fast", "--engine", help="fast or reference."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: planned per device)."),
    device: str = DeviceOpt,
    subtype: Optional[str] = typer.Option(None, "--subtype", help="WAV sample format, e.g. PCM_16 (default), PCM_24, FLOAT."),
    normalize: str = typer.Option("peak", "--normalize", help="peak, loudness or none."),
    offline: bool = typer.Option(False, "--offline", envvar="HF_HUB_OFFLINE", help="Never download; fail with the command that would."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress; print the summary line only."),
    as_json: bool = JsonOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Generate many clips from a batch file: resumable, batched, on one or many processes.

    Every item gets OUT_DIR/<name>.wav + <name>.json; manifest.jsonl records each item's status,
    files, seed, timings and error. A rerun skips finished items (and failed ones unless
    --retry-failed). Run on several GPUs with --processes N or under `accelerate launch -m musicgen_cli batch`.

    Examples:

      mgen batch prompts.txt --out-dir pack --duration 8 --seed 100

      mgen batch items.jsonl --out-dir pack --max-batch 8 --processes 2
    """
    import os
    import subprocess

    from .batch import BatchOptions, launch_command, relaunch_args, run_batch, under_launcher
    from .batchfile import Defaults, read_items
    from .engine import GenerateSettings
    from .manifest import load_manifest

    if max_batch < 1 or processes < 1:
        raise MgenError("--max-batch and --processes must be at least 1", "use --max-batch 1 or more")
    manifest = load_manifest(cache_dir)

    def known_model(name: str) -> None:
        if not Path(name).is_dir():
            manifest.get(name)

    defaults = Defaults(
        model=model_key,
        settings=GenerateSettings(
            duration=duration, temperature=temperature, top_k=top_k, top_p=top_p, guidance=guidance, greedy=greedy, engine=engine
        ),
        base_seed=seed,
    )
    items = read_items(input_file, defaults, out_dir, known_model)
    if processes > 1 and not under_launcher():
        raise typer.Exit(subprocess.run(launch_command(processes, relaunch_args(sys.argv))).returncode)
    options = BatchOptions(
        max_batch=max_batch,
        retry_failed=retry_failed,
        cache_dir=cache_dir,
        machine=_machine_for(cache_dir, device=device),
        cpu=device == "cpu",
        dtype=dtype,
        download=not offline,
        subtype=subtype,
        normalize=normalize,
    )
    from .batchpanel import BatchDisplay

    rank0 = not under_launcher() or os.environ.get("RANK", "0") == "0"
    if rank0 and not (quiet or as_json):
        with BatchDisplay(err_console, out_dir.resolve()):
            summary = run_batch(items, out_dir, options)
    else:
        summary = run_batch(items, out_dir, options)
    if not rank0:
        return
    if as_json:
        from dataclasses import asdict

        print(json.dumps(asdict(summary), indent=2, default=str))
    else:
        colour = "red" if summary.failed else "green"
        console.print(
            f"[{colour}]{summary.done}/{summary.items} done[/], {summary.failed} failed, {summary.generated} generated now, "
            f"{summary.skipped} already settled, {summary.clips_per_min:.1f} clips/min  manifest: {summary.manifest}",
            highlight=False,
        )
        for item_id, error in summary.failures:
            console.print(f"[red]{item_id}:[/] {error}", highlight=False)
    if summary.failed:
        raise typer.Exit(1)


@app.command("download", rich_help_panel="Models")
def download_cmd(
    model: Optional[str] = typer.Argument(None, help="Manifest key (e.g. small) or hub repo id (e.g. facebook/musicgen-small)."),
    model_key: Optional[str] = typer.Option(None, "--model-key", help="Same as the MODEL argument."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit (default: the manifest's, else main)."),
    include_audiocraft: bool = typer.Option(
        False, "--include-audiocraft", help="Also fetch audiocraft's state_dict.bin files (into AUDIOCRAFT_CACHE_DIR if set)."
    ),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Download a model from the Hugging Face hub into the cache (resumable, checksum-verified)."""
    from .hub import download_model
    from .manifest import load_manifest
    from .ui import RichReporter

    if model and model_key and model != model_key:
        raise MgenError(f"two models given: {model!r} and --model-key {model_key!r}", "pass just one")
    name = model or model_key
    if not name:
        raise MgenError("no model given", "run `mgen download small` or `mgen download facebook/musicgen-small`")
    manifest = load_manifest(cache_dir)
    entry = manifest.get(name)
    with RichReporter(console) as reporter:
        if entry.random_weights:
            from .models import model_folder

            folder = model_folder(manifest, entry, reporter=reporter)  # built locally, nothing to download
        else:
            folder = download_model(manifest, entry, reporter=reporter, revision=revision, include_audiocraft=include_audiocraft)
    console.print(f"[green]ready:[/] {folder}", highlight=False)


@app.command("import", rich_help_panel="Models")
def import_cmd(
    folder: Path = typer.Argument(..., help="A folder with config.json, model.safetensors and tokenizer files."),
    key: str = typer.Option(..., "--key", help="The manifest key to register it under (also its cache folder name)."),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """Check a local MusicGen folder (config, weight names and shapes, tokenizer) and copy it into the cache."""
    from .importer import import_model
    from .manifest import load_manifest
    from .ui import RichReporter

    manifest = load_manifest(cache_dir)
    with RichReporter(console) as reporter:
        entry = import_model(manifest, folder, key, reporter=reporter)
    console.print(f"[green]imported:[/] {entry.key} -> {manifest.folder(entry)}", highlight=False)


@app.command("import-audiocraft", rich_help_panel="Models")
def import_audiocraft_cmd(
    paths: list[Path] = typer.Argument(..., help="Folder holding state_dict.bin and compression_state_dict.bin, or those files."),
    key: str = typer.Option(..., "--key", help="Manifest key to register the converted model under."),
    base: Optional[str] = typer.Option(
        None, "--base", help="Model lending the T5 text encoder and tokenizer: small|medium|large|melody|<key> (default: small, melody for melody checkpoints)."
    ),
    apply_proposed: bool = typer.Option(
        False, "--apply-proposed", envvar="APPLY_PROPOSED", help="Apply high-confidence fuzzy name matches too (default: only propose them)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing model with the same key."),
    check: bool = typer.Option(True, "--check/--no-check", help="After writing, load the model and generate a few frames."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Convert an audiocraft MusicGen checkpoint (state_dict.bin + compression_state_dict.bin) into the cache."""
    from .audiocraft import ImportRefused, import_audiocraft
    from .importview import render_match_report

    try:
        result = import_audiocraft(
            paths, key, base=base, apply_proposed=apply_proposed, force=force, check=check, cache_dir=cache_dir
        )
    except ImportRefused as exc:
        if as_json:
            print(json.dumps({"imported": False, "error": str(exc), "report": exc.report.to_json()}, indent=2))
        else:
            render_match_report(err_console, exc.report, from_base=base)
        raise
    if as_json:
        summary = {"imported": True, "key": key, "folder": str(result.folder), "base": result.base, "notes": result.notes}
        print(json.dumps({**summary, "audio_shape": result.audio_shape, "report": result.report.to_json()}, indent=2))
        return
    render_match_report(console, result.report, from_base=result.base)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    arch = result.arch
    console.print(
        f"[green]imported[/] {key!r} -> {result.folder}\n"
        f"  decoder: {arch.layers} layers x {arch.hidden} hidden, {arch.heads} heads, {arch.codebooks} codebooks of {arch.card}, "
        f"{'stereo' if arch.channels == 2 else 'mono'}{', melody' if arch.melody else ''}; T5 and tokenizer from {result.base!r}"
    )
    if result.audio_shape:
        console.print(f"  smoke check: generated audio {list(result.audio_shape)}")


def _machine_for(cache_dir, gpu_mem=None, ram=None, cores=None, no_gpu=False, device="auto"):
    """The probed machine with any simulated parts (--gpu-mem, --ram, --cores, --no-gpu, --device)."""
    from .hardware import parse_size, probe, simulate

    if device not in ("auto", "cpu", "cuda"):
        raise MgenError(f"unknown device {device!r}", "use --device auto, cpu or cuda")
    machine = probe(cache_dir)
    if device == "cuda" and not machine.gpus and not gpu_mem:
        raise MgenError("--device cuda but torch sees no CUDA GPU", "install a CUDA build of torch, or use --device cpu")
    return simulate(
        machine,
        gpu_mem=[parse_size(s) for s in gpu_mem or []],
        ram=parse_size(ram) if ram else None,
        cores=cores,
        no_gpu=no_gpu or device == "cpu",
    )


@app.command("memory-plan", rich_help_panel="Memory")
def memory_plan_cmd(
    size: Optional[str] = typer.Option(None, "--size", help="small, medium or large (default: small)."),
    model_key: Optional[str] = typer.Option(None, "--model-key", help="Any manifest key or repo id instead of --size."),
    duration: float = typer.Option(30.0, "--duration", help="Seconds of audio to generate."),
    num_samples: int = typer.Option(1, "--num-samples", help="Clips generated together."),
    gpu_mem: Optional[list[str]] = GpuMemOpt,
    ram: Optional[str] = RamOpt,
    cores: Optional[int] = CoresOpt,
    no_gpu: bool = NoGpuOpt,
    reserve: Optional[str] = ReserveOpt,
    max_vram: Optional[str] = MaxVramOpt,
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: by device)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8 to halve the decoder's weights."),
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Where every part of the model would live for this job, and how fast it would run. Loads nothing."""
    from .hardware import parse_size
    from .manifest import load_manifest
    from .planner import Job, plan_memory
    from .sizing import entry_config

    if size and model_key:
        raise MgenError("--size and --model-key both name a model", "pass one of them")
    if size and size not in ("small", "medium", "large"):
        raise MgenError(f"unknown size {size!r}", "use --size small, medium or large")
    manifest = load_manifest(cache_dir)
    entry = manifest.get(model_key or size or "small")
    machine = _machine_for(cache_dir, gpu_mem, ram, cores, no_gpu)
    plan = plan_memory(
        entry_config(manifest, entry),
        Job(duration_s=duration, num_samples=num_samples),
        machine,
        dtype=dtype,
        quantize=quantize,
        reserve_bytes=parse_size(reserve) if reserve else None,
        max_vram_bytes=parse_size(max_vram) if max_vram else None,
    )
    if as_json:
        print(json.dumps({"model": entry.key, **plan.to_json()}, indent=2))
        return
    from .memory_views import plan_view

    title = f"Memory plan: {entry.key} ({entry.repo_id or 'local'}), {duration:g} s x {num_samples}"
    console.print(plan_view(plan, title))


@app.command("inspect-memory", rich_help_panel="Memory")
def inspect_memory_cmd(
    watch: bool = typer.Option(False, "--watch", help="Refresh every second until Ctrl-C."),
    cache_dir: Optional[Path] = CacheDirOpt,
) -> None:
    """What the machine has and uses now: GPUs, RAM, per-core CPU, torch threads, GPU processes, cache size."""
    import time

    from rich.live import Live

    from .cache import cache_root, folder_size
    from .memory_views import readout_view
    from .monitor import gpu_processes, snapshot

    root = cache_root(cache_dir)

    def view():
        return readout_view(snapshot(), gpu_processes(), folder_size(root), str(root))

    snapshot()  # CPU percentages are measured between calls: start the clock
    time.sleep(0.2)
    if not watch:
        console.print(view())
        return
    try:
        with Live(view(), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(1.0)
                live.update(view())
    except KeyboardInterrupt:
        pass


def main() -> None:
    """Console-script entry: user errors become one line and a non-zero exit, no traceback."""
    import os

    # transformers' config notes (e.g. MusicGen's pad id = vocab size) are noise to a CLI user.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        app()
    except MgenError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
