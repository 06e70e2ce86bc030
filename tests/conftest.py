"""Shared test set-up: paths to the repository and ../shared/data, and the rule that
tests marked `docker` skip, with a one-line reason, when no Docker engine is reachable."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
BASE_IMAGE = "restem-sandbox-base:bookworm"


@functools.cache
def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers, else why not (one line)."""
    try:
        import docker

        docker.from_env(timeout=10).ping()
    except Exception as exc:  # any failure means: no engine for these tests
        return f"no Docker engine reachable ({type(exc).__name__}); start dockerd or run make test"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "docker" in item.keywords and (reason := docker_unavailable_reason()):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"benchmark data not found at {DATA} (../shared/data beside the clone)")
    return DATA
