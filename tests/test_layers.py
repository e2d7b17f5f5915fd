"""The package's layer rules (pyproject.toml's import-linter contracts) hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is in the test extra"
    result = subprocess.run([exe, "--no-logo", "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_environment_read_in_one_module():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "musicgen_cli").rglob("*.py")
        if path.name != "config.py" and ("os.environ" in path.read_text() or "getenv(" in path.read_text())
    ]
    assert offenders == []


def test_the_contracts_declare_no_exceptions():
    """Every import the layers allow is allowed by the layers themselves, not by a listed exception."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert [c["name"] for c in contracts if c.get("ignore_imports")] == []

