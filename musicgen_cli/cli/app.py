"""The `mgen` command line: one module per command group; this one assembles the app."""

from __future__ import annotations

import signal
import sys

import typer

from musicgen_cli import config, text
from musicgen_cli.cli import generate, jobs, memory, models, serve, studio
from musicgen_cli.cli.options import console
from musicgen_cli.cli.wording import word
from musicgen_cli.errors import Interrupted, Terminated
from musicgen_cli.ui.console import print_error

INTERRUPTED = Interrupted.exit_code

app = typer.Typer(
    name="mgen",
    help="Run MusicGen text-to-music models on the hardware you own: plans memory, shows progress, writes WAVs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Every command inherits these from the app's context.
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from musicgen_cli import __version__

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



app.add_typer(models.models_app, name="models", rich_help_panel="Models")
app.command("generate", rich_help_panel="Making music", epilog=generate.EXAMPLES)(generate.generate_cmd)
app.command("studio", rich_help_panel="Making music", epilog=studio.EXAMPLES)(studio.studio_cmd)
app.command("test-suite", rich_help_panel="Making music")(jobs.test_suite_cmd)
app.command("batch", rich_help_panel="Making music", epilog=jobs.BATCH_EXAMPLES)(jobs.batch_cmd)
app.command("serve", rich_help_panel="Making music", epilog=serve.EXAMPLES)(serve.serve_cmd)
app.command("download", rich_help_panel="Models")(models.download_cmd)
app.command("import", rich_help_panel="Models")(models.import_cmd)
app.command("import-audiocraft", rich_help_panel="Models")(models.import_audiocraft_cmd)
app.command("import-hf-cache", rich_help_panel="Models")(models.import_hf_cache_cmd)
app.command("memory-plan", rich_help_panel="Memory")(memory.memory_plan_cmd)
app.command("inspect-memory", rich_help_panel="Memory")(memory.inspect_memory_cmd)
app.command("probe", rich_help_panel="Memory")(memory.probe_cmd)


def main() -> None:
    """Console-script entry: every error a user can cause becomes one line and a non-zero exit.

    The wording of each error type lives in cli/wording.py; MGEN_DEBUG=1 shows the traceback instead.
    """
    # transformers' config notes (e.g. MusicGen's pad id = vocab size) are noise to a CLI user.
    config.quiet_transformers_env()
    config.drop_stray_rank_vars()
    _terminate_like_ctrl_c()
    try:
        for number, arg in enumerate(sys.argv[1:], start=1):
            text.argument(arg, f"command-line argument {number}")
        code = app(standalone_mode=False, prog_name="mgen")
    except SystemExit:
        raise
    except BaseException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
            sys.exit(2)
        worded = None if config.debug() else word(exc)
        if worded is None:
            raise
        sys.exit(_say(*worded))
    if code == INTERRUPTED:  # Typer turns Ctrl-C into a silent exit 130; say what happened
        code = _say(*word(KeyboardInterrupt()))
    sys.exit(code if isinstance(code, int) else 0)


def _terminate_like_ctrl_c() -> None:
    """SIGTERM and SIGHUP unwind as Ctrl-C does, so every temporary file is cleaned up."""

    def stop(signum: int, frame) -> None:
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)


def _say(line: str, code: int) -> int:
    print_error(line)
    return code


if __name__ == "__main__":
    main()
