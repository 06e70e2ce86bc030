"""One owner per run directory: a second loop on the same directory fails at start naming
the first (host and pid), instead of both deleting each other's `.partial` steps.

The lock is an `flock` on `<run>/owner.lock`, whose text names the owner. The kernel (or the
NFS lock manager, on shared storage) drops the lock when the owner dies, however it dies, so
a crashed run never leaves a stale lock behind: the next run takes it over.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

LOCK_NAME = "owner.lock"


class RunDirectoryBusy(RuntimeError):
    """Another loop owns the run directory."""


class RunLock:
    """`with RunLock(run_dir):` holds the directory for this process."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            raise RunDirectoryBusy(f"run directory {self.path.parent} is in use by "
                                   f"{_describe(owner)}; wait for it to end or stop it "
                                   f"(its lock: {self.path})") from None
        owner = {"host": socket.gethostname(), "pid": os.getpid(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _describe(owner_text: str) -> str:
    try:
        owner = json.loads(owner_text)
        return f"pid {owner['pid']} on host {owner['host']} (since {owner['started']})"
    except (ValueError, KeyError, TypeError):
        return "another process (its lock file names no owner yet)"
