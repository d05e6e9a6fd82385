"""The code passes ruff's checks and is formatted as `ruff format` writes it (pyproject's
[tool.ruff]). A finding fails the suite, so CI enforces the style; fix it with
`.venv/bin/ruff check --fix . && .venv/bin/ruff format .`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.harness import venv_tool

ROOT = Path(__file__).resolve().parent.parent


def ruff() -> str:
    found = venv_tool("ruff")
    assert found, "ruff is in the lock (test extra); run bash scripts/setup.sh"
    return found


def test_ruff_check_finds_nothing():
    result = subprocess.run(
        [ruff(), "check", "--no-cache", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted_as_ruff_format_writes_it():
    result = subprocess.run(
        [ruff(), "format", "--no-cache", "--check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, "run .venv/bin/ruff format .\n" + result.stdout + result.stderr
