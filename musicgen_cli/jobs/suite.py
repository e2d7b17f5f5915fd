"""The reference test suite: three jobs (small, medium, large) through the generate engine.

Each job plans its memory, loads its model, generates and writes its WAV + sidecar. A model
that is not cached is a *skip* carrying the command that fetches it, never a crash; a job that
fails is recorded and the suite goes on. `report.json` beside the outputs holds every result.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from musicgen_cli.engine.musicgen import GenerateSettings, load_model
from musicgen_cli.engine.prompts import fold_lyrics, read_lyrics, slugify
from musicgen_cli.errors import MgenError, ModelNotFound
from musicgen_cli.events import Reporter
from musicgen_cli.jobs.outputs import check_outputs
from musicgen_cli.jobs.request import Request
from musicgen_cli.jobs.run import run
from musicgen_cli.store.cache import atomic_write_text

LYRICS_FILE = "lyrics_terraform_my_heart.txt"
QUICK_SECONDS = 2.0
DEFAULT_SEED = 0  # the suite is a reference run: the same audio every time unless a seed is given


@dataclass(frozen=True)
class SuiteJob:
    name: str
    model_key: str
    prompt: str
    duration: float
    output: str  # relative to the output directory


REFERENCE_JOBS = (
    SuiteJob("small", "small", "a 30-second grand piano jazz improvisation", 30.0, "out_small.wav"),
    SuiteJob("medium", "medium", "a 30-second grand piano jazz trio with bass and drums", 30.0, "out_medium.wav"),
    SuiteJob(
        "large",
        "large",
        "a late-night jazz ballad with grand piano, upright bass, brushed drums and soulful vocals",
        45.0,
        "output/out_large.wav",  # with lyrics: output/<slug of their title>.wav
    ),
)


@dataclass
class JobResult:
    job: str
    model: str
    status: str  # ok, skipped, failed
    duration_asked: float
    duration_produced: float = 0.0
    wall_s: float = 0.0
    steps_per_s: float = 0.0
    realtime_factor: float = 0.0
    peak_vram_bytes: float = 0.0
    peak_ram_bytes: float = 0.0
    output: str | None = None
    message: str = ""


def find_lyrics(explicit: Path | None, out_dir: Path) -> Path | None:
    """--lyrics, else lyrics_terraform_my_heart.txt in the working or output directory."""
    if explicit:
        return explicit
    for folder in (Path.cwd(), out_dir):
        if (folder / LYRICS_FILE).is_file():
            return folder / LYRICS_FILE
    return None


def select_jobs(
    only: list[str] | None,
    overrides: dict[str, str],
    quick: bool,
    large_duration: float,
    lyrics: Path | None,
) -> list[SuiteJob]:
    """The reference jobs after --only, --model-key overrides, --quick and the lyrics."""
    names = [job.name for job in REFERENCE_JOBS]
    unknown = set(only or []) - set(names)
    if unknown:
        raise MgenError(f"unknown suite job(s): {', '.join(sorted(unknown))}", f"choose from {', '.join(names)}")
    if not 30.0 <= large_duration <= 60.0:
        raise MgenError(f"--large-duration {large_duration:g} is out of range", "use 30 to 60 seconds")
    jobs = []
    for job in REFERENCE_JOBS:
        if only and job.name not in only:
            continue
        job = replace(job, model_key=overrides.get(job.name, overrides.get("*", job.model_key)))
        if job.name == "large":
            job = replace(job, duration=large_duration)
            if lyrics:
                song = read_lyrics(lyrics)
                job = replace(job, prompt=fold_lyrics(job.prompt, song), output=f"output/{slugify(song.title)}.wav")
        if quick:
            job = replace(job, duration=QUICK_SECONDS)
        jobs.append(job)
    return jobs


def parse_overrides(values: list[str]) -> dict[str, str]:
    """`--model-key tiny-random` (all jobs) or `--model-key large=stereo-large` (one job)."""
    out = {}
    for value in values:
        job, sep, key = value.partition("=")
        out[job if sep else "*"] = key if sep else value
    return out


def run_job(
    job: SuiteJob,
    out_dir: Path,
    *,
    cache_dir: Path | None,
    machine,
    download: bool,
    settings: GenerateSettings,
    reporter: Reporter,
    plan_kwargs: dict | None = None,
    overwrite: bool = False,
) -> JobResult:
    """One job: `settings` (sampling and seed) at the job's duration, planned with `plan_kwargs`."""
    result = JobResult(job=job.name, model=job.model_key, status="failed", duration_asked=job.duration)
    start = time.perf_counter()
    mg = None
    try:
        settings = replace(settings, duration=job.duration)
        mg = load_model(
            job.model_key, cache_dir=cache_dir, settings=settings, machine=machine, download=download, reporter=reporter,
            prompts=(job.prompt,), **(plan_kwargs or {}),
        )
        target = out_dir / job.output
        request = Request(prompts=(job.prompt,), settings=settings, model=job.model_key, paths=(target,), overwrite=overwrite,
                          extra={"suite_job": job.name})
        (written,) = run(request, mg, reporter)

    except ModelNotFound as exc:
        result.status, result.message = "skipped", str(exc)
        return result
    except Exception as exc:  # one job's failure (OOM, bad file) is recorded; the suite goes on
        result.message = str(exc) if isinstance(exc, MgenError) else f"{type(exc).__name__}: {exc}"
        result.wall_s = time.perf_counter() - start
        return result
    finally:
        if mg is not None:
            mg.close()  # the next job's model must not meet this one's memory
    record = written.sidecar
    result.status = "ok"
    result.duration_produced = record["duration_s"]
    result.steps_per_s = record["steps_per_s"]
    result.realtime_factor = record["realtime_factor"]
    result.peak_vram_bytes = record["peak_vram_bytes"] or 0.0
    result.peak_ram_bytes = record["peak_ram_bytes"] or 0.0
    result.output = str(target)
    result.wall_s = time.perf_counter() - start
    return result


def run_suite(
    jobs: list[SuiteJob],
    out_dir: Path,
    *,
    cache_dir: Path | None = None,
    machine=None,
    download: bool = False,
    settings: GenerateSettings | None = None,
    plan_kwargs: dict | None = None,
    reporter_for: Callable[[SuiteJob], Reporter],
    overwrite: bool = False,
) -> list[JobResult]:
    """Run the jobs in order and write report.json; returns every job's result.

    `settings` gives every job its sampling (the duration is the job's); without a seed the
    suite uses DEFAULT_SEED. Every job's settings and output are checked first, so a bad seed
    or an existing take stops the suite before the first model loads.
    """
    settings = settings or GenerateSettings()
    if settings.seed is None:
        settings = replace(settings, seed=DEFAULT_SEED)
    for job in jobs:
        replace(settings, duration=job.duration).validate()
    check_outputs([out_dir / job.output for job in jobs], overwrite=overwrite)
    results = []
    for job in jobs:
        with reporter_for(job) as reporter:
            results.append(
                run_job(
                    job, out_dir, cache_dir=cache_dir, machine=machine, download=download, settings=settings,
                    reporter=reporter, plan_kwargs=plan_kwargs, overwrite=overwrite,
                )
            )
    atomic_write_text(out_dir / "report.json", json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return results


def default_out_dir() -> Path:
    """/workspace inside the container, else the working directory."""
    workspace = Path("/workspace")
    return workspace if workspace.is_dir() else Path.cwd()
