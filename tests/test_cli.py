"""The `restem` console script as a user runs it: a separate process from the venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from restem_client import __version__

RESTEM = Path(sys.executable).parent / "restem"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RESTEM), *args], capture_output=True, text=True, timeout=60)


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"restem {__version__}"
    assert __version__.count(".") == 2


def test_help_lists_usage() -> None:
    out = run("--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: restem")
    assert "ReST-EM" in out.stdout


def test_unknown_command_fails_with_a_message() -> None:
    out = run("no-such-command")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr or "unrecognized" in out.stderr
