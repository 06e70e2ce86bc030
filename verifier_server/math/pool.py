"""A pool of worker processes for the symbolic comparison, with a wall-clock timeout per
job that works from any thread and from asyncio (no `signal.alarm`).

Each worker is a plain child process (`python -m verifier_server.math.pool`) that imports
sympy once, caps its own address space, says it is ready, then serves one job at a time over
its stdin/stdout with length-prefixed pickles (our own trusted messages; model text is only
data inside them). A job that overruns its timeout gets its worker killed and the caller gets
`TimeoutError`; the replacement starts in the background, off the caller's path. Plain
subprocesses, not multiprocessing: nothing re-imports the caller's `__main__`, and starting
one from a threaded parent (a gRPC server) is safe.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import resource
import select
import struct
import subprocess
import sys
import threading
from typing import IO, Any

WORKER_MEMORY_BYTES = 2 << 30
READY_TIMEOUT_S = 120.0
_HEADER = struct.Struct("!I")


class WorkerDied(RuntimeError):
    """The worker process ended mid-job (e.g. it hit its memory cap)."""


def _write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("worker closed its pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("worker closed its pipe")
    return pickle.loads(data)


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "verifier_server.math.pool"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if not self._readable(READY_TIMEOUT_S) or _read(self.process.stdout) != "ready":
            self.kill()
            raise RuntimeError("math worker did not start")

    def _readable(self, timeout_s: float) -> bool:
        return bool(select.select([self.process.stdout], [], [], timeout_s)[0])

    def ask(self, job: Any, timeout_s: float) -> Any:
        _write(self.process.stdin, job)
        if not self._readable(timeout_s):
            raise TimeoutError(f"symbolic comparison exceeded {timeout_s} s")
        return _read(self.process.stdout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()


class WorkerPool:
    """`run(gold, answer, timeout_s)` -> bool; raises TimeoutError, WorkerDied, or
    RuntimeError when sympy failed on the input."""

    def __init__(self, workers: int | None = None):
        self.size = workers or max(1, min(4, os.cpu_count() or 1))
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        starters = [threading.Thread(target=self._add) for _ in range(self.size)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()

    def _add(self) -> None:
        worker = _Worker()
        with self._lock:
            if self._closed:
                worker.kill()
                return
            self._live.add(worker)
        self._idle.put(worker)

    def _replace(self, worker: _Worker) -> None:
        with self._lock:
            self._live.discard(worker)
        worker.kill()
        threading.Thread(target=self._add, daemon=True).start()

    def run(self, gold: Any, answer: Any, timeout_s: float) -> bool:
        worker = self._idle.get()
        try:
            status, result = worker.ask((gold, answer), timeout_s)
        except TimeoutError:
            self._replace(worker)
            raise
        except (EOFError, OSError, pickle.UnpicklingError) as exc:  # died, e.g. out of memory
            self._replace(worker)
            raise WorkerDied(f"math worker died: {exc!r}") from exc
        self._idle.put(worker)
        if status != "ok":
            raise RuntimeError(result)
        return bool(result)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._live = list(self._live), set()
        for worker in workers:
            worker.kill()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: WorkerPool | None = None
_default_lock = threading.Lock()


def default_pool() -> WorkerPool:
    """The process-wide pool, started on first use (servers start it before gRPC)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = WorkerPool()
            atexit.register(_default.close)
        return _default


def _serve() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    from verifier_server.math.symbolic import decide

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _write(stdout, "ready")
    while True:
        try:
            gold, answer = _read(stdin)
        except EOFError:
            return
        try:
            _write(stdout, ("ok", decide(gold, answer)))
        except Exception as exc:  # sympy raises a zoo of exceptions on odd input
            _write(stdout, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    _serve()
