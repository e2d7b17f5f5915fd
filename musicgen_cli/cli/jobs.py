"""Commands that run many generations: the reference test-suite and batches."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from musicgen_cli import config
from musicgen_cli.cli.options import (
    CacheDirOpt,
    DurationOpt,
    JsonOpt,
    MachineOptions,
    OfflineOpt,
    OutputOptions,
    SamplingOptions,
    SpreadOptions,
    console,
    err_console,
    reporter_for,
    uses,
)
from musicgen_cli.errors import MgenError, ValidationError


@uses(machine=MachineOptions, sampling=SamplingOptions)
def test_suite_cmd(
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Where the WAVs and report.json go (default: /workspace if it exists, else here)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated jobs to run: small,medium,large."),
    quick: bool = typer.Option(False, "--quick", help="A few seconds per job: a smoke check of the whole set-up."),
    model_key: list[str] = typer.Option([], "--model-key", help="Model for every job (KEY) or one job (JOB=KEY); repeatable."),
    download: bool = typer.Option(False, "--download", help="Download missing models instead of skipping their jobs."),
    lyrics: Optional[Path] = typer.Option(None, "--lyrics", help="Lyrics for the large job (default: lyrics_terraform_my_heart.txt if present)."),
    large_duration: float = typer.Option(45.0, "--large-duration", help="Seconds for the large job (30-60)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run."),
    as_json: bool = JsonOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    *,
    machine: MachineOptions,
    sampling: SamplingOptions,
) -> None:
    """Run the three reference jobs (small 30 s, medium 30 s, large 45 s) and summarise them.

    Missing models are skipped with the command that fetches them (or fetched with --download).
    Every job uses seed 0 unless --seed gives another. Exit code is non-zero if any job failed.
    """
    from musicgen_cli.jobs.suite import default_out_dir, find_lyrics, parse_overrides, run_suite, select_jobs

    out_dir = (out_dir or default_out_dir()).resolve()
    names = [j.strip() for j in only.split(",") if j.strip()] if only else None
    jobs = select_jobs(names, parse_overrides(model_key), quick, large_duration, find_lyrics(lyrics, out_dir))
    plan_kwargs = machine.plan_kwargs()
    machine.threads()
    settings = sampling.settings()
    _fetch_diffusion([job.model_key for job in jobs] if settings.decoder == "mbd" else [], cache_dir, download, as_json)
    results = run_suite(
        jobs, out_dir, cache_dir=cache_dir, machine=machine.machine(cache_dir), download=download, settings=settings,
        plan_kwargs=plan_kwargs, overwrite=overwrite,
        reporter_for=lambda job: reporter_for(as_json, f"mgen test-suite: {job.name} ({job.model_key})"),
    )
    _suite_report(results, out_dir, as_json)


def _suite_report(results: list, out_dir: Path, as_json: bool) -> None:
    """The jobs' table (or JSON), a line per job that says something; exit 1 when any failed."""
    if as_json:
        from dataclasses import asdict

        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        from musicgen_cli.ui.tables import STATUS_COLOUR, suite_table

        console.print(suite_table(results, out_dir))
        for r in results:
            if r.message:
                console.print(f"[{STATUS_COLOUR[r.status]}]{r.job}:[/] {r.message}", highlight=False)
        console.print(f"report: {out_dir / 'report.json'}")
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def _batch_summary(summary, as_json: bool) -> None:
    """The summary line (or JSON) and each failure; exit 1 when any item failed."""
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


@uses(spread=SpreadOptions, machine=MachineOptions, sampling=SamplingOptions, output=OutputOptions)
def batch_cmd(
    input_file: Path = typer.Argument(..., help="Prompts: a text file (one a line) or .jsonl (prompt, duration, seed, model, output, any generate setting)."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Folder for the WAVs, their sidecars and manifest.jsonl."),
    model_key: str = typer.Option("small", "--model-key", "-m", help="Model for lines that name none (manifest key, repo id or folder)."),
    duration: float = DurationOpt,
    max_batch: int = typer.Option(4, "--max-batch", help="Most items generated in one pass (lowered to what the memory plan fits); 1 makes every item reproducible from its own seed."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Generate items the manifest records as failed again."),
    offline: bool = OfflineOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files at item names that hold other takes or other settings."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress; print the summary line only."),
    as_json: bool = JsonOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    *,
    spread: SpreadOptions, machine: MachineOptions, sampling: SamplingOptions, output: OutputOptions,
) -> None:
    """Generate many clips from a batch file: resumable, batched, on one or many processes."""
    import subprocess

    from musicgen_cli.jobs.batch import BatchOptions, launch_command, relaunch_args

    if max_batch < 1 or spread.processes < 1 or (spread.ray_workers is not None and spread.ray_workers < 1):
        raise MgenError("--max-batch, --processes and --ray-workers must be at least 1", "use 1 or more")
    run_batch = spread.runner()
    plan_kwargs, audio = machine.plan_kwargs(), output.audio()
    items = _batch_items(input_file, out_dir, model_key, duration, cache_dir, sampling, output)
    if not config.under_launcher():  # launched ranks find what the launching command fetched
        _fetch_diffusion([it.model for it in items if it.settings.decoder == "mbd"], cache_dir, not offline, quiet or as_json)
    if spread.processes > 1 and not config.under_launcher():
        raise typer.Exit(subprocess.run(launch_command(spread.processes, relaunch_args(sys.argv))).returncode)
    machine.threads()
    options = BatchOptions(
        max_batch=max_batch, retry_failed=retry_failed, cache_dir=cache_dir, machine=machine.machine(cache_dir),
        cpu=machine.cpu_only, download=not offline, audio=audio, **plan_kwargs, overwrite=overwrite,
    )
    rank0 = not config.under_launcher() or config.rank() == 0
    summary = _run_shown(run_batch, items, out_dir, options, shown=rank0 and not (quiet or as_json))
    if rank0:
        _batch_summary(summary, as_json)


def _batch_items(input_file: Path, out_dir: Path, model_key: str, duration: float, cache_dir: Optional[Path],
                 sampling: SamplingOptions, output: OutputOptions) -> list:
    """Every item of the batch file, checked with the command line's defaults, before anything loads."""
    from musicgen_cli.engine.validate import check_seed, check_writable_folder
    from musicgen_cli.jobs.batchfile import Defaults, read_items
    from musicgen_cli.jobs.lock import check_unlocked
    from musicgen_cli.store.manifest import load_manifest

    if out_dir.exists() and not out_dir.is_dir():
        raise ValidationError("out_dir", f"{out_dir} is a file, not a folder", "give a folder (it is made if missing)")
    check_writable_folder(out_dir)
    if not config.under_launcher():  # launched ranks: rank 0 takes the lock in run_batch
        check_unlocked(out_dir.resolve())
    manifest = load_manifest(cache_dir)

    def known_model(name: str) -> None:
        if not Path(name).is_dir():
            manifest.get(name)

    defaults = Defaults(model=model_key, settings=sampling.settings(duration=duration, seed=None), base_seed=sampling.seed,
                        fmt=(output.fmt or "wav").lower())
    defaults.settings.validate()  # the command line's own values, named by their flags
    check_seed(sampling.seed)  # the base seed of lines that give none
    return read_items(input_file, defaults, out_dir, known_model)


def _fetch_diffusion(models: list[str], cache_dir: Optional[Path], download: bool, silent: bool) -> None:
    """The MultiBand Diffusion checkpoint of each model that decodes with it, built or fetched
    before any model loads, as generate does: a missing one stops the run here, in one line."""
    if not models:
        return
    from musicgen_cli.engine.musicgen import diffusion_checkpoint

    with reporter_for(silent, "MultiBand Diffusion") as reporter:
        for name in dict.fromkeys(models):
            diffusion_checkpoint(name, cache_dir=cache_dir, download=download, reporter=reporter)


def _run_shown(run_batch, items: list, out_dir: Path, options, shown: bool):
    """`run_batch` (local or on Ray), under the batch panel when `shown`."""
    if not shown:
        return run_batch(items, out_dir, options)
    from musicgen_cli.ui.batchpanel import BatchDisplay

    with BatchDisplay(err_console, out_dir.resolve()):
        return run_batch(items, out_dir, options)


BATCH_EXAMPLES = """Every item gets OUT_DIR/<name>.wav + <name>.json; manifest.jsonl records each item's status,
files, seed, timings and error. A rerun skips finished items (and failed ones unless
--retry-failed). --duration and the sampling flags apply to lines that do not set them;
--seed is a base seed: item i gets BASE + i unless its line sets one (default: derived from
the output name). Run on several GPUs with --processes N or under `accelerate launch -m musicgen_cli batch`.

Examples:

  mgen batch prompts.txt --out-dir pack --duration 8 --seed 100

  mgen batch items.jsonl --out-dir pack --max-batch 8 --processes 2

  mgen batch items.jsonl --out-dir pack --ray auto
"""
