"""Shared test set-up: paths to the repository and ../shared/data, and the rule that
tests marked `docker` skip, with a one-line reason, when no Docker engine is reachable (and
tests marked `namespace` when bubblewrap cannot make a jail)."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
BASE_IMAGE = "restem-sandbox-base:bookworm"


@functools.cache
def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers, else why not (one line)."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH; install docker.io or run make test"
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if probe.returncode != 0:
        return "no Docker engine reachable; start dockerd or run make test"
    return None


@functools.cache
def bwrap_unavailable_reason() -> str | None:
    """None when bubblewrap can make a jail here, else why not (one line)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    probe = subprocess.run(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {probe.stderr.strip()[:120]}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "docker" in item.keywords and (reason := docker_unavailable_reason()):
            item.add_marker(pytest.mark.skip(reason=reason))
        if "namespace" in item.keywords and (reason := bwrap_unavailable_reason()):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"benchmark data not found at {DATA} (../shared/data beside the clone)")
    return DATA
