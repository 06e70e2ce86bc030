"""The sandbox image: its content-hash tag, and building it from `sandbox/image/Dockerfile`.

The tag is `restem-sandbox:<hash>` of the Dockerfile and the executor files, so a pool never
runs an executor older than the code beside it.

    python -m sandbox.image build [--base-image IMAGE]    (prints the tag)
    python -m sandbox.image tag
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTEXT = HERE.parent  # sandbox/
FILES = ("image/Dockerfile", "jail/executor.py", "jail/seccomp.py", "jail/values.py")
DEFAULT_BASE = "python:3.11-slim-bookworm"


def default_tag() -> str:
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode() + b"\0" + (CONTEXT / name).read_bytes())
    return f"restem-sandbox:{digest.hexdigest()[:12]}"


def exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


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
