"""Run the `mgen` console-script entry in-process or as a subprocess, with the same result shape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """`mgen ARGS` through cli.main() in this process: heavy imports are paid once per session."""
    from musicgen_cli.cli import app as cli

    argv = sys.argv
    sys.argv = ["mgen", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def run_subprocess(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`mgen ARGS` as a user runs it; the hub client then reads HF_* only from `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AUDIOCRAFT_"))}
    base.update({"PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_TELEMETRY": "1", "COLUMNS": "200", **env})
    return subprocess.run([sys.executable, "-m", "musicgen_cli", *args], env=base, capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line a user error prints, after checking there is nothing else."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]
