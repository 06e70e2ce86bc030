"""The sandbox image: its content-hash tag, building it from `sandbox/image/Dockerfile`, and
`check`, which tells why the docker backend cannot run here (no engine reachable, an engine
that refuses this user, the image not built) in one line that names the fix.

The tag is `restem-sandbox:<hash>` of the Dockerfile and the executor files, so a pool never
runs an executor older than the code beside it.

    python -m sandbox.image build [--base-image IMAGE]    (prints the tag)
    python -m sandbox.image tag
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTEXT = HERE.parent  # sandbox/
FILES = ("image/Dockerfile", "jail/executor.py", "jail/seccomp.py", "jail/testcode.py",
         "jail/values.py")
DEFAULT_BASE = "python:3.11-slim-bookworm"
ENGINE_TIMEOUT_S = 20.0  # an engine behind a dead TCP address would otherwise hang the CLI


class Unavailable(RuntimeError):
    """The docker backend cannot run here; the message is one line: the cause and the fix."""


def default_tag() -> str:
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode() + b"\0" + (CONTEXT / name).read_bytes())
    return f"restem-sandbox:{digest.hexdigest()[:12]}"


def _docker(*args: str) -> subprocess.CompletedProcess | None:
    """The docker CLI's answer, or None when the engine did not answer in time."""
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True,
                              timeout=ENGINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None


def exists(tag: str) -> bool:
    """True when the engine answers and holds `tag`; `check` says why not."""
    found = _docker("image", "inspect", "--format", "{{.Id}}", tag)
    return found is not None and found.returncode == 0


def endpoint() -> str:
    """The engine address the docker CLI uses (DOCKER_HOST, the current context, or the
    default socket)."""
    answer = _docker("context", "inspect", "--format", "{{.Endpoints.docker.Host}}")
    if answer is not None and answer.returncode == 0 and answer.stdout.strip():
        return answer.stdout.strip()
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def check(tag: str) -> None:
    """Raise `Unavailable` unless the engine answers and holds `tag` (the docker CLI must be
    on PATH)."""
    if exists(tag):
        return
    engine = endpoint()
    answer = _docker("version", "--format", "{{.Server.Version}}")
    if answer is None:
        raise Unavailable(f"the Docker engine at {engine} did not answer in "
                          f"{ENGINE_TIMEOUT_S:g} s")
    if answer.returncode != 0:
        socket = engine.removeprefix("unix://") if engine.startswith("unix://") else ""
        if "permission denied" in answer.stderr.lower():
            fix = (f"; give this user the socket's group (docker run --group-add "
                   f"$(stat -c %g {socket}))" if socket else "")
            raise Unavailable(f"the Docker engine at {engine} refuses this user "
                              f"(uid {os.getuid()}){fix}")
        fix = f"; start one, or mount its socket (-v {socket}:{socket})" if socket else ""
        raise Unavailable(f"no Docker engine reachable at {engine}{fix}")
    raise Unavailable(f"sandbox image {tag} is not built on the Docker engine at {engine}; "
                      "run `python -m sandbox.image build [--base-image IMAGE]` "
                      "(or `make images`)")


def build(base_image: str = DEFAULT_BASE, tag: str | None = None) -> str:
    """Build (unless present) and return the tag."""
    tag = tag or default_tag()
    if not exists(tag):
        subprocess.run(
            ["docker", "build", "-q", "-f", str(HERE / "Dockerfile"),
             "--build-arg", f"BASE_IMAGE={base_image}", "-t", tag, str(CONTEXT)],
            check=True, stdout=subprocess.DEVNULL,
        )
    return tag
