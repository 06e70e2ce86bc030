"""The `Verifier` core: one request in, one response out, for the gRPC servicer and for
in-process use alike.

Dispatch by task: math (extract, normalize, compare; the symbolic path on the math worker
pool; identical pairs answered from a bounded cache), exact (BIG-Bench Hard answers), code
(the sandbox pool). `validate` reads a request once into a `Job` (its kind, and the code
tests parsed); `run` answers jobs, `verify_many` requests. A malformed request becomes an
INVALID_REQUEST response whose message names the field; an internal failure becomes
SANDBOX_ERROR; neither is ever FAIL. Verdicts are `evals.checks.Verdict` until the response
is built (`verifier_server.wire` maps them to the wire).

Request content is hostile until proven otherwise: validation reads every field at bounded
cost (JSON test values are counted before they are parsed, too deep a nesting is refused,
limits are finite and have ceilings), one request's failure is that
request's answer and never its batch's, the math cache is keyed by digests and bounded in
bytes, and what a response echoes back (answers, test output) is truncated so that a response
stays far below the message limit. Pools are started in the
constructor, so a server builds its Verifier before it starts gRPC. Without a sandbox (none
asked for, or `turn_code_off`), code requests are INVALID_REQUEST with `code_off` as the
message, and `info()` says it too.
"""

from __future__ import annotations

import hashlib
import json
import logging
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

log = logging.getLogger(__name__)

VERSION = "1.0.0"
MAX_TIMEOUT_S = 600.0
MAX_REQUEST_ID_CHARS = 1_024
MAX_CASES = 10_000  # tests per code request (APPS problems have at most a few hundred)
MAX_JSON_ITEMS = 1_000_000  # values in a code request's call tests, all cases together
# Ceilings on what a request may ask of the sandbox (0 keeps the server's default).
MAX_MEMORY_BYTES = 16 << 30
MAX_OUTPUT_BYTES = 64 << 20  # stdout kept per test: it crosses back to this process
MAX_FILE_BYTES = 1 << 30
# What a response echoes back: an answer, and the output of each test, are cut to this.
MAX_ECHO_CHARS = 8_192
MAX_ECHO_OUTPUT_BYTES = 1 << 20  # per response, stdout and stderr of all tests together
MATH_CACHE_BYTES = 64 << 20
MATH_WAIT_S = 60.0  # how long a symbolic check waits for a free worker without a deadline


class InvalidRequest(ValueError):
    """A request that cannot be verified; the message names the field."""


class NoAnswer(ValueError):
    """A well-formed request whose answer is empty (a model that wrote no program): answered
    NO_ANSWER, a wrong answer, as a math answer with nothing to extract is."""


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
        self._math_cache: OrderedDict[bytes, pb.VerifyResponse] = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes = 0
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
        self, requests: list[pb.VerifyRequest], deadline: float | None = None,
        flow: object = None,
    ) -> list[pb.VerifyResponse]:
        """Responses in input order: each request validated (a malformed one answered
        INVALID_REQUEST), the rest run as jobs. `flow` names the caller (one per client
        connection) whose turn symbolic math jobs take on the worker pool."""
        out: list[pb.VerifyResponse | None] = [None] * len(requests)
        jobs: list[tuple[int, Job]] = []
        for i, request in enumerate(requests):
            started = time.monotonic()
            try:
                jobs.append((i, validate(request, self.max_processes)))
            except (InvalidRequest, NoAnswer) as exc:
                verdict = Verdict.NO_ANSWER if isinstance(exc, NoAnswer) else \
                    Verdict.INVALID_REQUEST
                out[i] = response(echo_id(request), verdict, str(exc),
                                  elapsed_ms=(time.monotonic() - started) * 1000)
            except Exception as exc:  # a bug reading some input: that request's answer only
                out[i] = internal_error(request, exc)
        for (i, _), resp in zip(jobs, self.run([job for _, job in jobs], deadline, flow),
                                strict=True):
            out[i] = resp
        return out  # type: ignore[return-value]

    def run(self, jobs: list[Job], deadline: float | None = None, flow: object = None
            ) -> list[pb.VerifyResponse]:
        """Responses to validated jobs, in order. Math jobs are checked together (shared
        dedupe and the worker pool in parallel); code jobs in parallel on the sandbox pool.
        A job that fails inside is answered SANDBOX_ERROR; the others are not affected."""
        out: list[pb.VerifyResponse | None] = [None] * len(jobs)
        math_groups: dict[tuple[str, bool, float], list[int]] = {}
        code: list[int] = []
        for i, job in enumerate(jobs):
            if job.kind == "math":
                math_groups.setdefault(self._math_key(job.request), []).append(i)
            elif job.kind == "exact":
                started = time.monotonic()
                try:
                    out[i] = self._exact(job.request)
                except Exception as exc:
                    out[i] = internal_error(job.request, exc)
                out[i].elapsed_ms = (time.monotonic() - started) * 1000
            else:
                code.append(i)

        def run_code(i: int) -> pb.VerifyResponse:
            try:
                return self._code(jobs[i], self._deadline(jobs[i].request, deadline))
            except Exception as exc:
                return internal_error(jobs[i].request, exc)

        if len(code) == 1:
            out[code[0]] = run_code(code[0])
        elif code:  # in parallel, one per sandbox worker and then some
            workers = min(len(code), 2 * (self.sandbox_workers or os.cpu_count() or 1))
            with ThreadPoolExecutor(max_workers=workers) as threads:
                for i, resp in zip(code, threads.map(run_code, code), strict=True):
                    out[i] = resp
        for (mode, extract, timeout_s), indices in math_groups.items():
            started = time.monotonic()
            group = [jobs[i].request for i in indices]
            try:
                answers = self._math(group, mode, extract, timeout_s, deadline, flow)
            except Exception as exc:
                answers = [internal_error(r, exc) for r in group]
            elapsed = (time.monotonic() - started) * 1000  # the group's time, cache hits included
            for i, resp in zip(indices, answers, strict=True):
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

    def _math_key(self, request: pb.VerifyRequest) -> tuple[str, bool, float]:
        """(mode, extract, seconds for each symbolic check): a request's own timeout_s
        shortens only its own checks."""
        task = request.math
        own = request.timeout_s if request.timeout_s > 0 else self.math_timeout_s
        return MODE_NAMES[task.mode], task.extract, min(own, self.math_timeout_s)

    def _math(self, requests: list[pb.VerifyRequest], mode: str, extract: bool,
              timeout_s: float, deadline: float | None, flow: object
              ) -> list[pb.VerifyResponse]:
        # Keys are digests: a cached entry costs its response, not the request's text.
        keys = [_math_digest(r.math.completion, r.math.gold, mode, extract) for r in requests]
        with self._lock:
            cached = {k: self._math_cache[k] for k in keys if k in self._math_cache}
            for k in cached:
                self._math_cache.move_to_end(k)
        todo = list(dict.fromkeys(k for k in keys if k not in cached))
        if todo:
            first = {k: r for k, r in zip(keys, requests, strict=True)}
            wait_s = MATH_WAIT_S if deadline is None else max(deadline - time.monotonic(), 0.0)
            verdicts = check_many([(first[k].math.completion, first[k].math.gold) for k in todo],
                                  extract=extract, mode=mode, timeout_s=timeout_s,
                                  pool=self.math_pool, wait_s=wait_s, flow=flow)
            with self._lock:
                for key, v in zip(todo, verdicts, strict=True):
                    resp = response("", v.verdict, v.detail, extracted=echo(v.extracted),
                                    canonical=echo(v.canonical), rule=v.rule or "")
                    cached[key] = resp
                    if v.verdict not in (Verdict.TIMEOUT, Verdict.SANDBOX_ERROR):
                        self._remember(key, resp)  # a TIMEOUT may pass on a quieter machine
        out = []
        for request, key in zip(requests, keys, strict=True):
            resp = pb.VerifyResponse()
            resp.CopyFrom(cached[key])
            resp.request_id = request.request_id
            out.append(resp)
        return out

    def _remember(self, key: bytes, resp: pb.VerifyResponse) -> None:
        """Cache an answer, evicting the oldest past `cache_size` entries or
        MATH_CACHE_BYTES (lock held)."""
        size = resp.ByteSize() + 64
        if key in self._math_cache:
            return
        self._math_cache[key] = resp
        self._cache_bytes += size
        while self._math_cache and (len(self._math_cache) > self._cache_size
                                    or self._cache_bytes > MATH_CACHE_BYTES):
            _, old = self._math_cache.popitem(last=False)
            self._cache_bytes -= old.ByteSize() + 64

    def _exact(self, request: pb.VerifyRequest) -> pb.VerifyResponse:
        task = request.exact
        v = check_exact(task.completion, task.target, extract_answer=task.extract,
                        answer_format=task.answer_format)
        return response(request.request_id, v.verdict, extracted=echo(v.extracted),
                        canonical=echo(v.extracted.casefold()))

    def _code(self, job: Job, deadline: float | None) -> pb.VerifyResponse:
        request = job.request
        if not self.sandbox_backend:
            return response(request.request_id, Verdict.INVALID_REQUEST, self.code_off)
        task = request.code
        result = self.start_sandbox().run(task.program, list(job.tests),
                                          code_limits(task.limits, self.default_limits),
                                          profile=PROFILE_NAMES[task.profile],
                                          run_all=task.run_all_tests, deadline=deadline)
        budget = [MAX_ECHO_OUTPUT_BYTES]  # test output echoed back, all tests together
        tests = [
            pb.TestResult(passed=t.passed, verdict=verdict_to_pb(sandbox_verdict(t.status)),
                          exit_code=t.exit_code or 0, stdout=_echo_output(t.stdout, budget),
                          stderr=_echo_output(t.stderr, budget), cpu_time_s=t.cpu_s,
                          wall_time_s=t.wall_s, detail=echo(t.detail))
            for t in result.tests
        ]
        return response(request.request_id, sandbox_verdict(result.verdict),
                        echo(result.detail), tests=tests, forgeable=result.forgeable,
                        elapsed_ms=result.elapsed_s * 1000)


def _math_digest(completion: str, gold: str, mode: str, extract: bool) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    for part in (completion, gold):  # surrogates cannot come off the wire; replaced here
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    h.update(f"{mode}:{extract}".encode())
    return h.digest()


def echo(text: str | None) -> str:
    """What a response carries of an answer or message: at most MAX_ECHO_CHARS of it."""
    if not text:
        return ""
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + " [...]"


def _echo_output(text: str, budget: list[int]) -> str:
    """Test output echoed back, from a budget shared by one response's tests."""
    if not text or budget[0] <= 0:
        return ""
    cut = text[: budget[0]]
    budget[0] -= len(cut)
    return cut


def echo_id(request: pb.VerifyRequest) -> str:
    """The request id to answer with (an oversized one is refused, and echoed cut)."""
    return request.request_id[:MAX_REQUEST_ID_CHARS]


def internal_error(request: pb.VerifyRequest, exc: BaseException) -> pb.VerifyResponse:
    """SANDBOX_ERROR for a request that broke something inside (logged with its trace)."""
    log.error("internal error on a %s request", request.WhichOneof("task"), exc_info=exc)
    return response(echo_id(request), Verdict.SANDBOX_ERROR,
                    f"internal error: {type(exc).__name__}")


# ---------------------------------------------------------------------- validation


def _json(text: str, field: str, budget: list[int], *, array: bool = False):
    """A call test's JSON value, parsed at bounded cost. `budget` holds how many values the
    request's cases may still hold together: they are counted before parsing (a 64 MB
    `[{},{},...]` costs gigabytes parsed). Nesting deeper than Python's recursion limit
    (`[[[...]]]` 100,000 deep) makes json raise RecursionError, which is caught here;
    shallower nesting past the sandbox's depth limit is refused when the test is built."""
    budget[0] -= text.count("[") + text.count("{") + text.count(",")
    if budget[0] < 0:
        raise InvalidRequest(f"{field}: the call cases hold more than {MAX_JSON_ITEMS:,} "
                             "values together")
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidRequest(f"{field}: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and ints over the digit limit
        raise InvalidRequest(f"{field}: not JSON ({str(exc)[:200]})") from None
    if array and not isinstance(value, list):
        raise InvalidRequest(f"{field}: must be a JSON array of positional arguments")
    return value


def validate(request: pb.VerifyRequest, max_processes: int) -> Job:
    """The request as a job, or InvalidRequest naming the field that is wrong."""
    if len(request.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequest(f"request_id: longer than {MAX_REQUEST_ID_CHARS} characters")
    if not 0 <= request.timeout_s <= MAX_TIMEOUT_S:  # NaN fails this too
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
        if code.WhichOneof("tests") is None:
            raise InvalidRequest("code.tests: none of stdio, call, asserts is set")
        _check_limits(code.limits, max_processes)
        if code.profile not in PROFILE_NAMES:
            raise InvalidRequest(f"code.profile: unknown value {code.profile}")
        tests = code_tests(code)
        if not code.program.strip():  # checked last: the request is otherwise well formed
            raise NoAnswer("code.program: empty (no program to run)")
        return Job(request, kind, tests)
    return Job(request, kind)


def _check_limits(limits: pb.Limits, max_processes: int) -> None:
    for name in ("cpu_time_s", "wall_time_s"):
        value = getattr(limits, name)
        if not 0 <= value <= MAX_TIMEOUT_S:  # NaN fails this too
            raise InvalidRequest(f"code.limits.{name}: must be between 0 and "
                                 f"{MAX_TIMEOUT_S:g} s")
    for name, ceiling in (("memory_bytes", MAX_MEMORY_BYTES),
                          ("max_output_bytes", MAX_OUTPUT_BYTES),
                          ("max_file_bytes", MAX_FILE_BYTES),
                          ("max_processes", max_processes)):
        value = getattr(limits, name)
        if value < 0:
            raise InvalidRequest(f"code.limits.{name}: negative")
        if value > ceiling:
            raise InvalidRequest(f"code.limits.{name}: this server allows {ceiling}")


def code_tests(code: pb.CodeTask) -> tuple[StdioTest | CallTest | AssertTest, ...]:
    """The sandbox tests of a code task, or InvalidRequest naming the field."""
    which = code.WhichOneof("tests")
    try:
        if which == "stdio":
            if not code.stdio.cases:
                raise InvalidRequest("code.stdio.cases: empty")
            if len(code.stdio.cases) > MAX_CASES:
                raise InvalidRequest(f"code.stdio.cases: more than {MAX_CASES:,}")
            return tuple(StdioTest(c.stdin, c.expected_stdout) for c in code.stdio.cases)
        if which == "call":
            call = code.call
            if not call.cases:
                raise InvalidRequest("code.call.cases: empty")
            if len(call.cases) > MAX_CASES:
                raise InvalidRequest(f"code.call.cases: more than {MAX_CASES:,}")
            budget = [2 * MAX_JSON_ITEMS]
            return tuple(
                CallTest(call.fn_name,
                         _json(c.args_json, f"code.call.cases[{i}].args_json", budget,
                               array=True),
                         _json(c.expected_json, f"code.call.cases[{i}].expected_json", budget))
                for i, c in enumerate(call.cases)
            )
        a = code.asserts
        return (AssertTest(a.test_code, a.entry_point, prompt=a.prompt),)
    except InvalidRequest:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"code.{which}: {str(exc)[:300]}") from None


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
