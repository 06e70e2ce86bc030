"""A pool of worker processes for the symbolic comparison (and for reading completions too
long to read inline), with a wall-clock timeout per call that works from any thread and from
asyncio (no `signal.alarm`).

Each worker is a plain child process (`python -m verifier_server.math.pool`) that imports
sympy once, caps its own address space, says it is ready, then serves one job at a time over
its stdin/stdout with length-prefixed pickles (our own trusted messages; model text is only
data inside them). Every wait is bounded: `run` waits for a free worker and for its answer
only until the call's own deadline (or, given `wait_s`, for a worker that long and then
`timeout_s` for the answer). A job that overruns gets its worker killed and the caller
gets `TimeoutError`; when no worker is free in time the caller gets `NoWorkerAvailable` (also
a `TimeoutError`). A lost worker is replaced in the background, off the caller's path; a
worker that fails to start is retried with backoff (each failure logged with its cause) until
one starts or the pool closes, so a slot is never lost for good. Free workers go to waiting
callers in turn by `flow` (the server passes one per client connection): a client with many
slow jobs queued delays another client's job by at most one job per client ahead of it, not
by its whole queue. Plain subprocesses, not
multiprocessing: nothing re-imports the caller's `__main__`, and starting one from a threaded
parent (a gRPC server) is safe.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import resource
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from typing import IO, Any

log = logging.getLogger(__name__)

COMMAND = (sys.executable, "-m", "verifier_server.math.pool")  # how a worker is started
WORKER_MEMORY_BYTES = 2 << 30
READY_TIMEOUT_S = 120.0
RETRY_FIRST_S = 0.5  # a worker that failed to start is tried again after this, doubling...
RETRY_MAX_S = 10.0  # ...up to this
MAX_MESSAGE_BYTES = 16 << 20  # jobs and answers are small; more is not a worker speaking
FILL_THREAD = "math-worker-start"  # the name of the threads that start (and retry) workers
_HEADER = struct.Struct("!I")


class WorkerDied(RuntimeError):
    """The worker process ended mid-job (e.g. it hit its memory cap)."""


class NoWorkerAvailable(TimeoutError):
    """No worker was free within the call's timeout: all busy, or none could start. It is a
    TimeoutError (the call ran out of time), never the RuntimeError of a sympy failure."""


class _StartFailed(Exception):
    """A worker process did not come up; the message says why."""


def _write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    """`size` bytes from `fd`; TimeoutError once the deadline has passed, even if an answer
    came in late (None: wait as long as it takes), EOFError when the other side closed the
    pipe."""
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size, 1 << 16))
        if not chunk:
            raise EOFError("worker closed its pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int, deadline: float | None) -> Any:
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline))
    if size > MAX_MESSAGE_BYTES:
        raise pickle.UnpicklingError(f"a {size}-byte message is not from a math worker")
    return pickle.loads(_read_exactly(fd, size, deadline))


class _Worker:
    """One worker process, started and ready, or `_StartFailed` naming why not."""

    def __init__(self, command: Sequence[str]) -> None:
        # The worker's stderr goes to a file only until it is ready (then it silences
        # itself): the last line explains a failed start, e.g. an ImportError.
        with tempfile.TemporaryFile() as errors:
            try:
                self.process = subprocess.Popen(list(command), stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=errors)
            except OSError as exc:
                raise _StartFailed(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
            try:
                ready = _receive(self.process.stdout.fileno(),
                                 time.monotonic() + READY_TIMEOUT_S)
            except TimeoutError:
                raise self._failed(f"not ready within {READY_TIMEOUT_S:g} s", errors) from None
            except EOFError:
                try:
                    why = f"exited with code {self.process.wait(1.0)} before it was ready"
                except subprocess.TimeoutExpired:
                    why = "closed its output before it was ready"
                raise self._failed(why, errors) from None
            except Exception as exc:  # unpickling junk raises any of several kinds
                raise self._failed(f"sent garbage instead of ready ({exc!r})", errors) from None
            if ready != "ready":
                raise self._failed(f"sent {ready!r} instead of ready", errors)

    def _failed(self, why: str, errors: IO[bytes]) -> _StartFailed:
        self.kill()
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - 4096))  # the end says why
        said = errors.read().decode(errors="replace").strip().splitlines()
        return _StartFailed(f"{why}: {said[-1][:200]}" if said else why)

    def ask(self, job: Any, deadline: float) -> Any:
        # An idle worker waits on an empty pipe and a job is small: this write never blocks.
        _write(self.process.stdin, job)
        return _receive(self.process.stdout.fileno(), deadline)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()


class _Ticket:
    """A caller waiting for a worker; `worker` is set when one is handed to it."""

    __slots__ = ("worker",)

    def __init__(self) -> None:
        self.worker: _Worker | None = None


class WorkerPool:
    """`run(gold, answer, timeout_s)` -> bool, within about timeout_s; raises TimeoutError
    (the comparison overran; `NoWorkerAvailable` when no worker was free in time),
    WorkerDied, or RuntimeError when sympy failed on the input. `call(...)` runs any job,
    such as reading a whole (completion, gold) pair, in a worker. `command` starts one worker
    (default: this module under the running Python)."""

    def __init__(self, workers: int | None = None, command: Sequence[str] = COMMAND):
        if isinstance(command, str) or not command:
            raise ValueError(f"command: the worker's argv as a non-empty list, not {command!r}")
        self.size = workers or max(1, min(4, os.cpu_count() or 1))
        self.command = tuple(command)
        self._idle: list[_Worker] = []
        self._waiting: OrderedDict[Hashable, deque[_Ticket]] = OrderedDict()  # by flow, in turn
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._last_failure = ""
        # Servers start the pool before serving: wait for each slot's first try (a slot
        # that failed keeps retrying in the background).
        tried = [threading.Event() for _ in range(self.size)]
        for event in tried:
            threading.Thread(target=self._fill, args=(event,), name=FILL_THREAD,
                             daemon=True).start()
        for event in tried:
            event.wait()

    def _fill(self, tried: threading.Event | None = None) -> None:
        """Start one slot's worker, retrying with backoff until it starts or the pool closes."""
        delay, failures = RETRY_FIRST_S, 0
        try:
            while not self._closed.is_set():
                try:
                    worker = _Worker(self.command)
                except Exception as exc:  # whatever went wrong, the slot must come back
                    failures += 1
                    self._last_failure = str(exc) if isinstance(exc, _StartFailed) else repr(exc)
                    log.warning("math worker failed to start (%s); retrying in %g s",
                                self._last_failure, delay)
                    if tried is not None:
                        tried.set()
                    if self._closed.wait(delay):  # close() stops the retrying
                        return
                    delay = min(2 * delay, RETRY_MAX_S)
                    continue
                with self._lock:
                    if self._closed.is_set():
                        worker.kill()
                        return
                    self._live.add(worker)
                self._give(worker)
                if failures:
                    log.warning("math worker started after %d failed attempt(s)", failures)
                return
        finally:
            if tried is not None:
                tried.set()

    def _replace(self, worker: _Worker) -> None:
        with self._lock:
            self._live.discard(worker)

        def renew() -> None:
            try:
                worker.kill()
            finally:
                self._fill()

        threading.Thread(target=renew, name=FILL_THREAD, daemon=True).start()

    def _give(self, worker: _Worker) -> None:
        """A free worker: to the next waiting flow in turn, else idle."""
        with self._turn:
            self._idle.append(worker)
            self._hand_out()

    def _hand_out(self) -> None:
        """Give idle workers to waiting callers, one flow after another (lock held)."""
        while self._idle and self._waiting:
            flow, tickets = next(iter(self._waiting.items()))
            tickets.popleft().worker = self._idle.pop()
            if tickets:
                self._waiting.move_to_end(flow)  # the next one of this flow waits its turn
            else:
                del self._waiting[flow]
            self._turn.notify_all()

    def _take(self, deadline: float, waited_s: float, flow: Hashable) -> _Worker:
        """An idle, running worker, waiting for one at most until the deadline."""
        while True:
            with self._turn:
                if self._closed.is_set():
                    raise NoWorkerAvailable("the math worker pool is closed")
                ticket = _Ticket()
                self._waiting.setdefault(flow, deque()).append(ticket)
                self._hand_out()
                while ticket.worker is None:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closed.is_set():
                        self._forget(flow, ticket)
                        if self._closed.is_set():
                            raise NoWorkerAvailable("the math worker pool is closed")
                        running = len(self._live)
                        failure = f"; last start failure: {self._last_failure}" \
                            if running < self.size and self._last_failure else ""
                        raise NoWorkerAvailable(f"no math worker free within {waited_s:g} s "
                                                f"({running} of {self.size} running{failure})")
                    self._turn.wait(left)
                worker = ticket.worker
            if worker.process.poll() is None:
                return worker
            self._replace(worker)  # died while idle (killed, out of memory): wait again

    def _forget(self, flow: Hashable, ticket: _Ticket) -> None:
        """Take a waiting ticket back (lock held)."""
        tickets = self._waiting.get(flow)
        if tickets is not None and ticket in tickets:
            tickets.remove(ticket)
            if not tickets:
                del self._waiting[flow]

    def _call(self, job: tuple, timeout_s: float, wait_s: float | None, flow: Hashable) -> Any:
        started = time.monotonic()
        waited_s = timeout_s if wait_s is None else wait_s
        worker = self._take(started + waited_s, waited_s, flow)
        deadline = started + timeout_s if wait_s is None else time.monotonic() + timeout_s
        try:
            status, result = worker.ask(job, deadline)
        except TimeoutError:
            self._replace(worker)
            raise TimeoutError(f"symbolic comparison exceeded {timeout_s:g} s") from None
        except (EOFError, OSError, pickle.UnpicklingError) as exc:  # died, e.g. out of memory
            self._replace(worker)
            raise WorkerDied(f"math worker died: {exc!r}") from exc
        self._give(worker)
        if status != "ok":
            raise RuntimeError(result)
        return result

    def run(self, gold: Any, answer: Any, timeout_s: float, *, wait_s: float | None = None,
            flow: Hashable = None) -> bool:
        """Is `answer` equal to `gold` (two parsed values)? `wait_s`: how long to wait for a
        free worker, apart from the `timeout_s` the comparison may take (None: both within
        timeout_s); `flow`: whose turn this call takes (one per client)."""
        return bool(self._call(("decide", gold, answer), timeout_s, wait_s, flow))

    def call(self, function: Callable[..., Any], args: tuple, timeout_s: float, *,
             wait_s: float | None = None, flow: Hashable = None) -> Any:
        """function(*args) in a worker: a module-level function (pickled by name, so the
        worker imports its module), such as reading a whole completion; `wait_s` and `flow`
        as for `run`."""
        return self._call((function, *args), timeout_s, wait_s, flow)

    def worker_pids(self) -> list[int]:
        """The process ids of the running workers (for monitoring and tests)."""
        with self._lock:
            return [worker.process.pid for worker in self._live]

    def close(self) -> None:
        with self._turn:
            self._closed.set()
            workers, self._live = list(self._live), set()
            self._idle.clear()
            self._turn.notify_all()
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

    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # started: stderr mattered only until now
    stdin, stdout = sys.stdin.fileno(), sys.stdout.buffer
    _write(stdout, "ready")
    while True:
        try:
            kind, *job = _receive(stdin, None)
        except EOFError:
            return
        try:
            _write(stdout, ("ok", decide(*job) if kind == "decide" else kind(*job)))
        except Exception as exc:  # sympy raises a zoo of exceptions on odd input
            _write(stdout, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    _serve()
