"""The project's own hygiene, run as part of the one test command: lint, format, types, and
that the public surface is what the docs say."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_lint_and_format() -> None:
    r = _run("ruff", "check", "src", "tests", "bench", "examples", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr
    f = _run("ruff", "format", "--check", "src")
    assert f.returncode == 0, f.stdout + f.stderr


@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy not installed")
def test_mypy_src() -> None:
    r = _run(sys.executable, "-m", "mypy")
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]


def test_public_api() -> None:
    import ftprep

    assert set(ftprep.__all__) >= {
        "audit",
        "build",
        "load_project",
        "Example",
        "Dataset",
        "__version__",
    }
    for name in ftprep.__all__:
        assert hasattr(ftprep, name)


def test_every_cli_command_is_documented() -> None:
    from ftprep.cli import main

    doc = (ROOT / "docs" / "cli.md").read_text()
    for name, cmd in main.commands.items():
        assert f"ftprep {name}" in doc, f"`ftprep {name}` missing from docs/cli.md"
        for sub in getattr(cmd, "commands", {}):
            assert f"ftprep {name} {sub}" in doc, f"`ftprep {name} {sub}` missing from docs/cli.md"
