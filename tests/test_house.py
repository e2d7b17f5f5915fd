"""How the code is kept: thin commands (the library does the work)."""

from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[1] / "musicgen_cli" / "cli"
MAX_COMMAND_LINES = 40


def test_every_command_function_is_a_thin_adapter():
    """parse -> request -> run -> format: a command that grows past this belongs in the library."""
    long = {}
    for path in CLI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_cmd"):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_COMMAND_LINES:
                    long[f"{path.name}:{node.name}"] = lines
    assert long == {}
    assert len([p for p in CLI.glob("*.py") if "_cmd(" in p.read_text()]) >= 5  # the walk found the commands
