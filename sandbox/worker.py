"""One warm worker: a started backend process and the framed channel to its executor (its
stdin and stdout, or the control socket it connected to).

Every reply is awaited with a deadline (the job's wall limit plus slack). A worker that
misses it, closes its pipe, or answers something that is not a frame is broken: the caller
gets `WorkerError` and the pool replaces the worker.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from collections.abc import Callable

from sandbox.backends import Launch, WorkerSpec, launch

START_TIMEOUT_S = 60.0
MAX_FRAME = 256 * 2**20


class WorkerError(Exception):
    """The worker process failed; not the program's fault."""


class Worker:
    def __init__(self, spec: WorkerSpec, spawn: Callable[[WorkerSpec], Launch] = launch) -> None:
        self.launch: Launch = spawn(spec)
        self.name = self.launch.name
        self.jobs = 0
        self.dirty = False  # replace before the next job
        self.suspect = False  # check before the next job (it timed out)
        self._in = self.launch.process.stdin.fileno()
        self._out = self.launch.process.stdout.fileno()
        self._channel = None  # the control socket, when the executor connected to one
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            if self.launch.control is not None:
                self._channel = self.launch.control.accept(deadline, self._out)
                if self._channel is not None:
                    self._in = self._out = self._channel.fileno()
                elif time.monotonic() >= deadline:
                    raise WorkerError(f"worker {self.name}: its executor neither connected to "
                                      f"the control socket nor answered on stdout in "
                                      f"{START_TIMEOUT_S:.0f} s{self._stderr()}")
            hello = self._read(deadline)
        except WorkerError:
            self.close()
            raise
        if "ready" not in hello:
            self.close()
            raise WorkerError(f"worker {self.name} did not start: {hello}")

    def request(self, message: dict, timeout_s: float) -> dict:
        body = json.dumps(message, separators=(",", ":")).encode()
        try:
            os.write(self._in, struct.pack(">I", len(body)))
            view = memoryview(body)
            while view:
                view = view[os.write(self._in, view) :]
        except OSError as exc:
            self.dirty = True
            raise WorkerError(f"worker {self.name}: cannot send ({exc}){self._stderr()}") from None
        return self._read(time.monotonic() + timeout_s)

    def _read(self, deadline: float) -> dict:
        head = self._read_exact(4, deadline)
        size = struct.unpack(">I", head)[0]
        if size > MAX_FRAME:
            self.dirty = True
            raise WorkerError(f"worker {self.name}: frame of {size} bytes")
        try:
            return json.loads(self._read_exact(size, deadline))
        except ValueError as exc:
            self.dirty = True
            raise WorkerError(f"worker {self.name}: unreadable reply ({exc})") from None

    def _read_exact(self, size: int, deadline: float) -> bytes:
        chunks, got = [], 0
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                self.dirty = True
                raise WorkerError(f"worker {self.name}: no reply in time{self._stderr()}")
            chunk = os.read(self._out, min(size - got, 1 << 20))
            if not chunk:
                self.dirty = True
                raise WorkerError(f"worker {self.name} exited{self._stderr()}")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _stderr(self) -> str:
        """What the backend process said on stderr, once it has exited (for error messages)."""
        process = self.launch.process
        if process.poll() is None:
            return ""
        text = process.stderr.read(4000).decode("utf-8", "replace").strip()
        return f": {text}" if text else f" (exit {process.returncode})"

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self.launch.close()
