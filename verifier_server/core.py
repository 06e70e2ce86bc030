"""The `Verifier` core: one request in, one response out, for the gRPC servicer and for
in-process use alike.

Dispatch by task: math (extract, normalize, compare; the symbolic path on the math worker
pool; identical pairs answered from a bounded cache), exact (BIG-Bench Hard answers), code
(the sandbox pool). `validate` reads a request once into a `Job` (its kind, and the code
tests parsed); `run` answers jobs, `verify_many` requests. A malformed request becomes an
INVALID_REQUEST response whose message names the field; an internal failure becomes
SANDBOX_ERROR; neither is ever FAIL. Verdicts are `evals.checks.Verdict` until the response
is built (`verifier_server.wire` maps them to the wire). Pools are started in the
constructor, so a server builds its Verifier before it starts gRPC. Without a sandbox (none
asked for, or `turn_code_off`), code requests are INVALID_REQUEST with `code_off` as the
message, and `info()` says it too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from evals.checks import ANSWER_FORMATS, Verdict
from restem_proto.v1 import verifier_pb2 as pb
from sandbox import AssertTest, CallTest, Limits, Sandbox, StdioTest
from sandbox import Status as SandboxStatus
from sandbox.backends import default_backend
from verifier_server.exact import check_exact
from verifier_server.math import DEFAULT_TIMEOUT_S, check_many
from verifier_server.math.pool import WorkerPool, default_pool
from verifier_server.wire import MODE_NAMES, PROFILE_NAMES, verdict_to_pb

VERSION = "1.0.0"
MAX_TIMEOUT_S = 600.0


class InvalidRequest(ValueError):
    """A request that cannot be verified; the message names the field."""


@dataclass(frozen=True)
class Job:
    """A request that passed `validate`, with what validation read from it."""

    request: pb.VerifyRequest
    kind: str  # math, exact or code
    tests: tuple[StdioTest | CallTest | AssertTest, ...] = ()  # code: for the sandbox


def response(request_id: str, verdict: Verdict, message: str = "", **fields
             ) -> pb.VerifyResponse:
    return pb.VerifyResponse(request_id=request_id, verdict=verdict_to_pb(verdict),
                             reward=1.0 if Verdict(verdict) is Verdict.PASS else 0.0,
                             message=message,
                             **fields)


def sandbox_verdict(status: SandboxStatus) -> Verdict:
    """The sandbox's status words are verdict names (tests/test_verifier_protocol.py)."""
    return Verdict(status.value)


class Verifier:
    def __init__(
        self,
        sandbox_backend: str | None = "docker",
        sandbox_workers: int | None = None,
        *,
        default_limits: Limits | None = None,
        max_processes: int = 32,
        math_workers: int | None = None,
        math_timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_size: int = 100_000,
        lazy_sandbox: bool = False,
    ) -> None:
        """`sandbox_backend`: docker, namespace, local, "auto" (docker if its engine answers,
        else namespace; decided when the pool starts) or None (no code tasks).
        `lazy_sandbox`: start the sandbox pool at the first code request (in-process use; a
        server starts everything before gRPC)."""
        self._own_math_pool = bool(math_workers)
        self.math_pool = WorkerPool(math_workers) if math_workers else default_pool()
        self.math_timeout_s = math_timeout_s
        self.default_limits = default_limits or Limits()
        self.max_processes = max_processes
        self.sandbox_backend, self.sandbox_workers = sandbox_backend, sandbox_workers
        self._sandbox: Sandbox | None = None
        self._sandbox_lock = threading.Lock()
        self.code_off = "" if sandbox_backend else "code execution is off: no sandbox here"
        if sandbox_backend and not lazy_sandbox:
            self.start_sandbox()
        self._math_cache: OrderedDict[tuple, pb.VerifyResponse] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def start_sandbox(self) -> Sandbox:
        """The sandbox pool, started now if it is not yet (raises what `Sandbox` raises)."""
        with self._sandbox_lock:
            if self._sandbox is None:
                if self.sandbox_backend == "auto":
                    self.sandbox_backend = default_backend()
                self._sandbox = Sandbox(self.sandbox_backend, self.sandbox_workers,
                                        limits=self.default_limits,
                                        max_processes=self.max_processes)
            return self._sandbox

    def turn_code_off(self, reason: str) -> None:
        """From now on answer code requests INVALID_REQUEST with `reason` (one line: why, and
        how to turn code on). For a server whose sandbox cannot start."""
        self.sandbox_backend, self.code_off = None, reason

    @property
    def sandbox(self) -> Sandbox | None:
        return self._sandbox

    # ------------------------------------------------------------------ entry points

    def verify(self, request: pb.VerifyRequest, deadline: float | None = None) -> pb.VerifyResponse:
        """Never raises for a bad request (INVALID_REQUEST) or a broken sandbox (SANDBOX_ERROR)."""
        return self.verify_many([request], deadline)[0]

    def verify_many(
        self, requests: list[pb.VerifyRequest], deadline: float | None = None
    ) -> list[pb.VerifyResponse]:
        """Responses in input order: each request validated (a malformed one answered
        INVALID_REQUEST), the rest run as jobs."""
        out: list[pb.VerifyResponse | None] = [None] * len(requests)
        jobs: list[tuple[int, Job]] = []
        for i, request in enumerate(requests):
            started = time.monotonic()
            try:
                jobs.append((i, validate(request, self.max_processes)))
            except InvalidRequest as exc:
                out[i] = response(request.request_id, Verdict.INVALID_REQUEST, str(exc),
                                  elapsed_ms=(time.monotonic() - started) * 1000)
        for (i, _), resp in zip(jobs, self.run([job for _, job in jobs], deadline), strict=True):
            out[i] = resp
        return out  # type: ignore[return-value]

    def run(self, jobs: list[Job], deadline: float | None = None) -> list[pb.VerifyResponse]:
        """Responses to validated jobs, in order. Math jobs are checked together (shared
        dedupe and the worker pool in parallel); code jobs in parallel on the sandbox pool."""
        out: list[pb.VerifyResponse | None] = [None] * len(jobs)
        math_groups: dict[tuple[str, bool], list[int]] = {}
        code: list[int] = []
        for i, job in enumerate(jobs):
            if job.kind == "math":
                key = (MODE_NAMES[job.request.math.mode], job.request.math.extract)
                math_groups.setdefault(key, []).append(i)
            elif job.kind == "exact":
                started = time.monotonic()
                out[i] = self._exact(job.request)
                out[i].elapsed_ms = (time.monotonic() - started) * 1000
            else:
                code.append(i)

        def run_code(i: int) -> pb.VerifyResponse:
            return self._code(jobs[i], self._deadline(jobs[i].request, deadline))

        if len(code) == 1:
            out[code[0]] = run_code(code[0])
        elif code:  # in parallel, one per sandbox worker and then some
            workers = min(len(code), 2 * (self.sandbox_workers or os.cpu_count() or 1))
            with ThreadPoolExecutor(max_workers=workers) as threads:
                for i, resp in zip(code, threads.map(run_code, code), strict=True):
                    out[i] = resp
        for (mode, extract), indices in math_groups.items():
            started = time.monotonic()
            group = self._math([jobs[i].request for i in indices], mode, extract)
            elapsed = (time.monotonic() - started) * 1000  # the group's time, cache hits included
            for i, resp in zip(indices, group, strict=True):
                resp.elapsed_ms = elapsed
                out[i] = resp
        return out  # type: ignore[return-value]

    def info(self) -> pb.ServerInfo:
        limits = self.default_limits
        return pb.ServerInfo(
            version=VERSION,
            sandbox_backends=[self.sandbox_backend] if self.sandbox_backend else [],
            code_off=self.code_off,
            sandbox_workers=self.sandbox.size if self.sandbox else 0,
            math_workers=self.math_pool.size,
            default_limits=pb.Limits(
                cpu_time_s=limits.cpu_s, wall_time_s=limits.wall_limit_s,
                memory_bytes=limits.memory_mb * 2**20, max_processes=self.max_processes,
                max_output_bytes=limits.output_bytes, max_file_bytes=limits.file_bytes,
            ),
        )

    def close(self) -> None:
        if self.sandbox:
            self.sandbox.close()
        if self._own_math_pool:
            self.math_pool.close()

    # ------------------------------------------------------------------ tasks

    def _deadline(self, request: pb.VerifyRequest, deadline: float | None) -> float | None:
        if request.timeout_s > 0:
            own = time.monotonic() + request.timeout_s
            deadline = own if deadline is None else min(deadline, own)
        return deadline

    def _math(self, requests: list[pb.VerifyRequest], mode: str, extract: bool):
        keys = [(r.math.completion, r.math.gold, mode, extract) for r in requests]
        with self._lock:
            cached = {k: self._math_cache[k] for k in keys if k in self._math_cache}
        todo = list(dict.fromkeys(k for k in keys if k not in cached))
        if todo:
            timeout = min((r.timeout_s for r in requests if r.timeout_s > 0),
                          default=self.math_timeout_s)
            verdicts = check_many([(k[0], k[1]) for k in todo], extract=extract, mode=mode,
                                  timeout_s=min(timeout, self.math_timeout_s),
                                  pool=self.math_pool)
            with self._lock:
                for key, v in zip(todo, verdicts, strict=True):
                    resp = response("", v.verdict, v.detail, extracted=v.extracted or "",
                                    canonical=v.canonical or "", rule=v.rule or "")
                    cached[key] = resp
                    if v.verdict is not Verdict.TIMEOUT:  # may pass on a quieter machine
                        self._math_cache[key] = resp
                while len(self._math_cache) > self._cache_size:
                    self._math_cache.popitem(last=False)
        out = []
        for request, key in zip(requests, keys, strict=True):
            resp = pb.VerifyResponse()
            resp.CopyFrom(cached[key])
            resp.request_id = request.request_id
            out.append(resp)
        return out

    def _exact(self, request: pb.VerifyRequest) -> pb.VerifyResponse:
        task = request.exact
        v = check_exact(task.completion, task.target, extract_answer=task.extract,
                        answer_format=task.answer_format)
        return response(request.request_id, v.verdict, extracted=v.extracted,
                        canonical=v.extracted.casefold())

    def _code(self, job: Job, deadline: float | None) -> pb.VerifyResponse:
        request = job.request
        if not self.sandbox_backend:
            return response(request.request_id, Verdict.INVALID_REQUEST, self.code_off)
        task = request.code
        result = self.start_sandbox().run(task.program, list(job.tests),
                                          code_limits(task.limits, self.default_limits),
                                          profile=PROFILE_NAMES[task.profile],
                                          run_all=task.run_all_tests, deadline=deadline)
        tests = [
            pb.TestResult(passed=t.passed, verdict=verdict_to_pb(sandbox_verdict(t.status)),
                          exit_code=t.exit_code or 0, stdout=t.stdout, stderr=t.stderr,
                          cpu_time_s=t.cpu_s, wall_time_s=t.wall_s, detail=t.detail)
            for t in result.tests
        ]
        return response(request.request_id, sandbox_verdict(result.verdict), result.detail,
                        tests=tests, forgeable=result.forgeable,
                        elapsed_ms=result.elapsed_s * 1000)


# ---------------------------------------------------------------------- validation


def _json(text: str, field: str, *, array: bool = False):
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"{field}: not JSON ({exc})") from None
    if array and not isinstance(value, list):
        raise InvalidRequest(f"{field}: must be a JSON array of positional arguments")
    return value


def validate(request: pb.VerifyRequest, max_processes: int) -> Job:
    """The request as a job, or InvalidRequest naming the field that is wrong."""
    if not 0 <= request.timeout_s <= MAX_TIMEOUT_S:
        raise InvalidRequest(f"timeout_s: must be between 0 and {MAX_TIMEOUT_S:g}")
    kind = request.WhichOneof("task")
    if kind is None:
        raise InvalidRequest("task: none of math, exact, code is set")
    if kind == "math" and not request.math.gold.strip():
        raise InvalidRequest("math.gold: empty")
    if kind == "math" and request.math.mode not in MODE_NAMES:
        raise InvalidRequest(f"math.mode: unknown value {request.math.mode}")
    if kind == "exact" and not request.exact.target.strip():
        raise InvalidRequest("exact.target: empty")
    if kind == "exact" and request.exact.answer_format not in ANSWER_FORMATS:
        raise InvalidRequest("exact.answer_format: must be multiple_choice or free_text")
    if kind == "code":
        code = request.code
        if not code.program.strip():
            raise InvalidRequest("code.program: empty")
        if code.WhichOneof("tests") is None:
            raise InvalidRequest("code.tests: none of stdio, call, asserts is set")
        limits = code.limits
        for name in ("cpu_time_s", "wall_time_s", "memory_bytes", "max_output_bytes",
                     "max_file_bytes", "max_processes"):
            if getattr(limits, name) < 0:
                raise InvalidRequest(f"code.limits.{name}: negative")
        if limits.max_processes > max_processes:
            raise InvalidRequest(f"code.limits.max_processes: this server allows {max_processes}")
        if limits.cpu_time_s > MAX_TIMEOUT_S or limits.wall_time_s > MAX_TIMEOUT_S:
            raise InvalidRequest(f"code.limits: time limits above {MAX_TIMEOUT_S:g} s")
        if code.profile not in PROFILE_NAMES:
            raise InvalidRequest(f"code.profile: unknown value {code.profile}")
        return Job(request, kind, code_tests(code))
    return Job(request, kind)


def code_tests(code: pb.CodeTask) -> tuple[StdioTest | CallTest | AssertTest, ...]:
    """The sandbox tests of a code task, or InvalidRequest naming the field."""
    which = code.WhichOneof("tests")
    try:
        if which == "stdio":
            if not code.stdio.cases:
                raise InvalidRequest("code.stdio.cases: empty")
            return tuple(StdioTest(c.stdin, c.expected_stdout) for c in code.stdio.cases)
        if which == "call":
            call = code.call
            if not call.cases:
                raise InvalidRequest("code.call.cases: empty")
            return tuple(
                CallTest(call.fn_name,
                         _json(c.args_json, f"code.call.cases[{i}].args_json", array=True),
                         _json(c.expected_json, f"code.call.cases[{i}].expected_json"))
                for i, c in enumerate(call.cases)
            )
        a = code.asserts
        return (AssertTest(a.test_code, a.entry_point, prompt=a.prompt),)
    except InvalidRequest:
        raise
    except ValueError as exc:
        raise InvalidRequest(f"code.{which}: {exc}") from None


def code_limits(limits: pb.Limits, default: Limits) -> Limits:
    """Request limits over the server defaults (0 keeps the default)."""
    return Limits(
        cpu_s=limits.cpu_time_s or default.cpu_s,
        wall_s=limits.wall_time_s or default.wall_s,
        memory_mb=(limits.memory_bytes // 2**20) or default.memory_mb,
        output_bytes=limits.max_output_bytes or default.output_bytes,
        file_bytes=limits.max_file_bytes or default.file_bytes,
        open_files=default.open_files,
    )
