"""The offline sandbox base image: built by sandbox/image/build-base.sh, cached by tag,
and able to run Python locked down (no network, read-only root, no capabilities, non-root)."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import BASE_IMAGE, REPO

pytestmark = pytest.mark.docker

LOCKED_DOWN = ["--network", "none", "--read-only", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", "--user", "65534:65534",
               "--pids-limit", "32", "--memory", "128m", "--memory-swap", "128m"]

PROBE = r"""
import os, socket, sys
print(sys.version_info[:2] >= (3, 11), os.getuid())
try:
    open("/usr/probe", "w")
    print("root-writable")
except OSError:
    print("root-readonly")
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("network")
except OSError:
    print("no-network")
"""


@pytest.fixture(scope="module")
def base_image() -> str:
    out = subprocess.run([str(REPO / "sandbox/image/build-base.sh"), BASE_IMAGE],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    return BASE_IMAGE


def test_second_build_is_cached(base_image: str) -> None:
    start = time.monotonic()
    out = subprocess.run([str(REPO / "sandbox/image/build-base.sh"), base_image],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "cached" in out.stdout
    assert time.monotonic() - start < 10


def test_python_runs_locked_down(base_image: str) -> None:
    command = ["docker", "run", "--rm", *LOCKED_DOWN, base_image, "python3", "-c", PROBE]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "65534", "root-readonly", "no-network"]
