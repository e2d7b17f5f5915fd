"""`mgen studio`: plan and load once, then take after take from prompts typed (or piped) in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from musicgen_cli.cli.options import (
    CacheDirOpt,
    DurationOpt,
    MachineOptions,
    ModelOptions,
    NumSamplesOpt,
    OfflineOpt,
    SamplingOptions,
    console,
    err_console,
    uses,
)
from musicgen_cli.errors import Interrupted


def _studio_options(model: ModelOptions, out_dir: Optional[Path], fmt: str, subtype: Optional[str], normalize: str,
                    offline: bool, cache_dir: Optional[Path], machine: MachineOptions):
    """What stays fixed for the session, from the flags."""
    from musicgen_cli.jobs.studio import StudioOptions

    return StudioOptions(
        model=model.name(), out_dir=out_dir or Path("studio") / time.strftime("%Y-%m-%d-%H%M%S"), fmt=fmt.lower(),
        subtype=subtype, normalize=normalize.lower(), cache_dir=cache_dir, download=not offline,
        **machine.plan_kwargs(), extra={"torch_threads": machine.threads()}, machine=machine.machine(cache_dir),
    )


EXAMPLES = """Type a prompt to generate a take (written to DIR/take-NNN-<slug>.wav with its sidecar), or a
command: /duration S, /seed N|random, /again, /extend [S], /model KEY, /takes, /play [N],
/keep N NAME, /help, /quit (or Ctrl-D). Ctrl-C stops the take in progress.

Examples:

  mgen studio --size small --duration 8

  mgen studio --model-key tiny-random < session.txt
"""


@uses(model=ModelOptions, machine=MachineOptions, sampling=SamplingOptions)
def studio_cmd(
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", "-o", help="Folder for the takes (default: studio/<date-time>/)."),
    duration: float = DurationOpt,
    num_samples: int = NumSamplesOpt,
    fmt: str = typer.Option("wav", "--format", help="wav, flac or ogg."),
    subtype: Optional[str] = typer.Option(None, "--subtype", help="Sample format, e.g. PCM_16 (default), PCM_24, FLOAT."),
    normalize: str = typer.Option("peak", "--normalize", help="peak, loudness or none (never clips)."),
    offline: bool = OfflineOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    *,
    model: ModelOptions,
    machine: MachineOptions,
    sampling: SamplingOptions,
) -> None:
    """An interactive session: the model stays loaded, each line you type is a take."""
    from musicgen_cli.jobs.studio import Studio
    from musicgen_cli.store.cache import studio_history_path
    from musicgen_cli.ui.studio import StudioScreen, run_session

    settings = sampling.settings(duration=duration, num_samples=num_samples)
    options = _studio_options(model, out_dir, fmt, subtype, normalize, offline, cache_dir, machine)
    screen = StudioScreen(console, err_console)
    studio = Studio(options, settings, working=screen.working)  # checks every setting before loading
    try:
        mg = studio.start()
    except KeyboardInterrupt:
        raise Interrupted("stopped while loading the model", "run mgen studio again") from None
    console.print(
        f"studio: {studio.model_key} loaded ({mg.channels} channel(s), {mg.sample_rate} Hz); takes go to "
        f"{options.out_dir}/. Type a prompt, /help for commands, /quit or Ctrl-D to end.",
        highlight=False, soft_wrap=True,
    )
    try:
        made = run_session(studio, screen, studio_history_path())
    except KeyboardInterrupt:  # Ctrl-C while reading piped lines
        made = len(studio.takes)
    console.print(f"studio: {made} take(s) in {options.out_dir}", highlight=False, soft_wrap=True)
