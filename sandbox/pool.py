"""`Sandbox`: a pool of warm workers, and the API the server and the benchmarks call.

    with Sandbox(backend="docker", workers=4) as sb:
        result = sb.run(program, tests=[...], limits=Limits(...))   # or: await sb.arun(...)
        raw = sb.execute(program, stdin="")

A worker takes one job at a time. It is replaced, in a background thread so callers never
wait for a container to start, after `max_jobs` jobs, after any anomaly (memory or output
limit, a signal, processes left behind, an internal error), and when the canary that runs
every `canary_every` jobs fails. After a plain timeout (the job's process killed, nothing
left behind) it is kept when the after-job check finds it clean: no process but its own,
empty scratch, and the canary passes (a fresh Docker worker costs far more CPU than
that). A worker that fails to start is tried again with backoff (each failure logged)
until one starts, and while every slot is failing a job fails at once instead of waiting.
An internal failure is retried on a fresh worker (`retries` times) and otherwise reported
as SANDBOX_ERROR, never as FAIL. Identical runs (same program, tests, limits, profile) are
executed once and answered from a bounded cache (sandbox.single_flight).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import os
import queue
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sandbox import image as sandbox_image
from sandbox import judge
from sandbox.backends import BACKENDS, JOB_UID, WorkerSpec, cgroup_support, launch
from sandbox.cases import AssertTest, CallTest, StdioTest
from sandbox.compare import check_profile
from sandbox.limits import Limits
from sandbox.results import ANOMALIES, DEADLINE_PASSED, Execution, RunResult, Status
from sandbox.single_flight import SingleFlight
from sandbox.worker import Worker, WorkerError

log = logging.getLogger(__name__)
REPLY_SLACK_S = 15.0  # beyond the wall limit, before a silent worker counts as broken
CANARY = ("print(sum(range(10)))", "45\n")
NAMESPACE_HINT = (
    f" (run as root, the namespace backend starts bubblewrap as uid {JOB_UID}, never as root,"
    " which needs unprivileged user namespaces: allow them (sysctl user.max_user_namespaces,"
    " kernel.unprivileged_userns_clone or kernel.apparmor_restrict_unprivileged_userns),"
    " or use the docker backend)"
)
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0  # backoff between tries to start a worker


def _ping(worker: Worker) -> dict:
    """What a worker's executor says is left in it, or {"error": why} (bounded by 30 s)."""
    try:
        return worker.request({"op": "ping"}, 30.0)
    except WorkerError as exc:
        return {"error": str(exc)}


class Sandbox:
    def __init__(
        self,
        backend: str = "docker",
        workers: int | None = None,
        *,
        limits: Limits | None = None,
        image: str = "",
        max_processes: int = 32,
        worker_memory_mb: int = 2048,
        cpus_per_worker: float = 1.0,
        max_jobs: int = 2000,
        canary_every: int = 200,
        retries: int = 2,
        cache_size: int = 4096,
        acquire_timeout_s: float = 120.0,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown sandbox backend {backend!r}; expected one of {BACKENDS}")
        self.backend = backend
        self.size = workers or os.cpu_count() or 1
        if backend == "local":
            log.warning("sandbox backend 'local' isolates nothing: use it for trusted code only")
        if backend == "docker":
            if shutil.which("docker") is None:
                raise sandbox_image.Unavailable("the docker backend needs the docker CLI on PATH")
            image = image or sandbox_image.default_tag()
            sandbox_image.check(image)  # Unavailable: no engine, or the image not built there
        self.limits = limits or Limits()
        self.spec = WorkerSpec(
            backend, image, max_processes, worker_memory_mb, cpus_per_worker,
            labels={"restem.owner": str(os.getpid())},
        )
        self.max_jobs, self.canary_every, self.retries = max_jobs, canary_every, retries
        self.acquire_timeout_s = acquire_timeout_s
        self.stats = {"jobs": 0, "replaced": 0, "retried": 0, "cache_hits": 0}
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._starting = 0  # slots whose worker is being started (or retried)
        self._failing = 0  # of those, slots waiting to retry after a failed start
        self._busy = 0
        self._closed = threading.Event()  # also wakes the retry waits when the pool closes
        self._all: set[Worker] = set()
        self._results = SingleFlight(cache_size, functools.partial(self._count, "cache_hits"))
        self._threads = ThreadPoolExecutor(max_workers=max(4, 2 * self.size))
        # Worker processes are started from this one long-lived thread: bubblewrap's
        # --die-with-parent (PR_SET_PDEATHSIG) fires when the *thread* that forked it exits.
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-launch")
        self._last_start_error = ""
        tried = [threading.Event() for _ in range(self.size)]
        with self._lock:
            self._starting += self.size
        for event in tried:
            threading.Thread(target=self._start_worker, args=(event,), daemon=True).start()
        for event in tried:
            event.wait()
        if self._idle.qsize() == 0:
            self.close()
            hint = NAMESPACE_HINT if backend == "namespace" and os.geteuid() == 0 else ""
            raise RuntimeError(f"no {backend} sandbox worker could start: "
                               f"{self._last_start_error}{hint}")
        if self._idle.qsize() < self.size:
            log.warning("%d of %d sandbox workers failed to start (%s); retrying in the "
                        "background", self.size - self._idle.qsize(), self.size,
                        self._last_start_error)

    # ------------------------------------------------------------------ public API

    def run(
        self,
        program: str,
        tests: list[StdioTest | CallTest | AssertTest],
        limits: Limits | None = None,
        *,
        profile: str = "strict",
        run_all: bool = False,
        deadline: float | None = None,
    ) -> RunResult:
        """Run `program` against `tests` and judge it here, outside the sandbox.

        `deadline` (time.monotonic()) caps every job's wall limit by the time left, so a
        caller's deadline kills the program; a run with no time left is a TIMEOUT."""
        if not isinstance(program, str):
            raise ValueError(f"program must be a string, got {type(program).__name__}")
        if not tests:
            raise ValueError("run() needs at least one test; use execute() for a bare run")
        for test in tests:
            if not isinstance(test, StdioTest | CallTest | AssertTest):
                raise ValueError(f"not a test: {test!r:.80} (use StdioTest, CallTest, AssertTest)")
        check_profile(profile)
        limits = limits or self.limits
        key = hashlib.sha256(repr((program, tests, limits, profile, run_all)).encode()).hexdigest()

        def compute() -> tuple[RunResult, bool]:
            started = time.monotonic()
            send = self._send if deadline is None else self._deadline_sender(deadline)
            try:
                result = judge.run_tests(send, program, tests, limits, profile, run_all)
            except judge.SandboxFailure as exc:
                result = RunResult(Status.SANDBOX_ERROR, detail=str(exc)[:2000])
            result = RunResult(result.verdict, result.tests, result.forgeable, result.detail,
                               round(time.monotonic() - started, 4))
            # A TIMEOUT under a deadline may be the deadline's doing: this caller's alone.
            return result, not (deadline is not None and result.verdict is Status.TIMEOUT)

        return self._results.run(key, compute, deadline)

    async def arun(
        self, program: str, tests: list, limits: Limits | None = None, **kw
    ) -> RunResult:
        """`run` without blocking the event loop."""
        call = functools.partial(self.run, program, tests, limits, **kw)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def execute(self, program: str, stdin: str = "", limits: Limits | None = None) -> Execution:
        """One run of `program` with `stdin`, nothing judged (PASS means exit code 0)."""
        wire = (limits or self.limits).to_wire()
        try:
            return self._send({"op": "script", "program": program, "stdin": stdin, "limits": wire})
        except judge.SandboxFailure as exc:
            return Execution(Status.SANDBOX_ERROR, detail=str(exc)[:2000])

    async def aexecute(self, program: str, stdin: str = "", limits: Limits | None = None):
        call = functools.partial(self.execute, program, stdin, limits)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def canary(self) -> bool:
        """Run the canary on every idle worker now; True when all of them pass."""
        return all(self._on_idle_workers(self._canary_passes))

    def inspect(self) -> list[dict]:
        """Ask every idle worker what is left in it: {"processes": n, "scratch": [names]}."""
        return self._on_idle_workers(_ping)

    def _on_idle_workers(self, fn):
        idle = []
        while True:
            try:
                idle.append(self._idle.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            self._busy += len(idle)
        answers = []
        for worker in idle:
            answer = fn(worker)
            answers.append(answer)
            broken = answer is False or (isinstance(answer, dict) and "error" in answer)
            self._release(worker, force_replace=broken)
        return answers

    def info(self) -> dict:
        """What this pool is: backend, size, image, limits, and cgroup controllers in use."""
        return {
            "backend": self.backend,
            "workers": self.size,
            "busy": self._busy,
            "image": self.spec.image,
            "cgroups": cgroup_support() if self.backend == "namespace" else [],
            "limits": self.limits.to_wire(),
            **self.stats,
        }

    def wait_ready(self, timeout_s: float = 120.0) -> bool:
        """Wait until every slot holds a started, idle worker."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._starting == 0 and self._busy == 0 and self._idle.qsize() == self.size:
                    return True
            time.sleep(0.05)
        return False

    def worker_names(self) -> list[str]:
        with self._lock:
            return sorted(w.name for w in self._all)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            workers = list(self._all)
        for worker in workers:
            worker.close()
        self._threads.shutdown(wait=False)
        self._launcher.shutdown(wait=False)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ workers

    def _deadline_sender(self, deadline: float) -> judge.Send:
        def send(job: dict) -> Execution:
            left = deadline - time.monotonic()
            if left <= 0.01:
                return Execution(Status.TIMEOUT, detail=DEADLINE_PASSED)
            wire = dict(job["limits"])
            capped = left < max(wire["wall_s"], wire["cpu_s"])
            wire["wall_s"] = min(wire["wall_s"], left)
            wire["cpu_s"] = min(wire["cpu_s"], left)
            ex = self._send({**job, "limits": wire})
            if capped and ex.status is Status.TIMEOUT:  # the deadline's doing, maybe not the job's
                ex = dataclasses.replace(ex, detail=DEADLINE_PASSED)
            return ex

        return send

    def _send(self, job: dict) -> Execution:
        """Run one job on an idle worker (each job takes a worker only while it runs, so the
        trusted-side judging between jobs never holds one). A worker that fails is replaced
        and the job retried on another; after `retries` retries this raises SandboxFailure."""
        failure = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retried")
            worker = self._acquire()
            if worker is None:
                failure = f"no sandbox worker available: {self._last_start_error}"
                continue
            try:
                reply = worker.request(job, job["limits"]["wall_s"] + REPLY_SLACK_S)
                worker.jobs += 1
                self._count("jobs")
                ex = Execution.from_wire(reply)
                if ex.status is not Status.SANDBOX_ERROR:
                    if ex.status is Status.TIMEOUT and not ex.leftovers:
                        worker.suspect = True  # checked before its next job
                    elif ex.status in ANOMALIES or ex.leftovers or ex.signal:
                        worker.dirty = True
                    return ex
                failure = ex.detail or "the executor reported an internal error"
                worker.dirty = True
            except WorkerError as exc:
                worker.dirty = True
                failure = str(exc)
            finally:
                self._release(worker)
            log.warning("sandbox failure on %s (attempt %d): %s", worker.name, attempt + 1, failure)
        raise judge.SandboxFailure(failure)

    def _count(self, name: str) -> None:
        with self._lock:  # many caller threads update these
            self.stats[name] += 1

    def _acquire(self) -> Worker | None:
        deadline = time.monotonic() + self.acquire_timeout_s
        while time.monotonic() < deadline:
            try:
                worker = self._idle.get(timeout=0.5)
            except queue.Empty:
                with self._lock:  # no worker, and every slot is failing to start: say so now
                    if self._closed.is_set() or (not self._all and self._failing == self._starting):
                        return None
                continue
            with self._lock:
                self._busy += 1
            return worker
        return None

    def _release(self, worker: Worker, force_replace: bool = False) -> None:
        with self._lock:
            self._busy -= 1
        if not (force_replace or worker.dirty or worker.jobs >= self.max_jobs) and self._fit(
                worker):
            self._idle.put(worker)
            return
        self._replace(worker)

    def _fit(self, worker: Worker) -> bool:
        """Whether a worker may take another job: after a timeout, the after-job check and
        the canary; otherwise the canary every `canary_every` jobs."""
        if worker.suspect:
            worker.suspect = False
            return self._settled(worker) and self._canary_passes(worker)
        due = self.canary_every and worker.jobs and worker.jobs % self.canary_every == 0
        return not due or self._canary_passes(worker)

    def _settled(self, worker: Worker) -> bool:
        """The after-job check: only the executor's own processes, and empty scratch."""
        left = _ping(worker)
        if left.get("processes") == 0 and left.get("scratch") == []:
            return True
        log.warning("sandbox worker %s is not clean after a timeout (%s); replacing it",
                    worker.name, left.get("error") or
                    f"{left.get('processes')} process(es), scratch {left.get('scratch')}")
        return False

    def _canary_passes(self, worker: Worker) -> bool:
        program, expected = CANARY
        job = {"op": "script", "program": program, "stdin": "", "limits": Limits().to_wire()}
        try:
            reply = worker.request(job, 30.0)
        except WorkerError:
            return False
        return reply.get("status") == "PASS" and reply.get("stdout") == expected

    def _replace(self, worker: Worker) -> None:
        with self._lock:
            self._all.discard(worker)
            self.stats["replaced"] += 1
            closed = self._closed.is_set()
            if not closed:
                self._starting += 1
        threading.Thread(target=worker.close, daemon=True).start()
        if not closed:
            threading.Thread(target=self._start_worker, daemon=True).start()

    def _start_worker(self, tried: threading.Event | None = None) -> None:
        """Start one slot's worker; a failed start is retried with backoff (and logged, but
        for the pool's first try, which the constructor reports) until one starts or the pool
        closes, so a slot is never lost for good. `tried` is set after the first try."""
        delay = RETRY_FIRST_S
        spawn = lambda spec: self._launcher.submit(launch, spec).result()  # noqa: E731
        while True:
            try:
                worker = Worker(self.spec, spawn)
            except Exception as exc:  # a backend that cannot start: reported by _acquire
                self._last_start_error = str(exc)[:1000]
                if tried is None:
                    log.warning("sandbox worker failed to start (%s); retrying in %g s",
                                self._last_start_error, delay)
                with self._lock:
                    self._failing += 1
                if tried is not None:
                    tried.set()
                    tried = None
                closed = self._closed.wait(delay)
                with self._lock:
                    self._failing -= 1
                    if closed:
                        self._starting -= 1
                        return
                delay = min(2 * delay, RETRY_MAX_S)
                continue
            with self._lock:
                self._starting -= 1
                closed = self._closed.is_set()
                if not closed:
                    self._all.add(worker)
            if closed:
                worker.close()
            else:
                self._idle.put(worker)
            if tried is not None:
                tried.set()
            return
