"""The `Verifier` core: check records in, `CheckResult`s out, for in-process use and for
the gRPC service alike (the service translates protobuf at its edge, `verifier_server.wire`).

Dispatch by kind: math (extract, normalize, compare; the symbolic path on the math worker
pool; identical pairs answered from a bounded cache), exact (BIG-Bench Hard answers), code
(the sandbox pool). `validate` holds a check to this verifier's ceilings and reads it into
a `Job` (the code tests as the sandbox runs them); `run` answers jobs, `check_many` checks.
A check this verifier refuses is answered INVALID_REQUEST with a message naming the field;
an empty program is NO_ANSWER; an internal failure is SANDBOX_ERROR; none is ever FAIL.

Check content is hostile until proven otherwise: the records bound what they hold when they
are built, the ceilings here bound what a check may ask of the sandbox, one check's failure
is that check's answer and never its batch's, the math cache is keyed by digests and bounded
in bytes, and what a result echoes back (answers, test output) is truncated so that a
response stays far below the message limit. Pools are started in the constructor, so a
server builds its Verifier before it starts gRPC. Without a sandbox (none asked for, or
`turn_code_off`), code checks are INVALID_REQUEST with `code_off` as the message, and
`info()` says it too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from evals.checks import (
    AssertTests,
    CallTests,
    Check,
    CheckResult,
    CodeCheck,
    ExactCheck,
    InvalidCheck,
    MathCheck,
    StdioTests,
    TestOutcome,
    Verdict,
    VerifierInfo,
)
from sandbox import AssertTest, CallTest, Limits, Sandbox, StdioTest
from sandbox import Status as SandboxStatus
from sandbox.backends import default_backend
from verifier_server.exact import check_exact
from verifier_server.math import DEFAULT_TIMEOUT_S, check_many
from verifier_server.math.pool import WorkerPool, default_pool

log = logging.getLogger(__name__)

VERSION = "1.0.0"
MAX_TIMEOUT_S = 600.0  # a check's timeout_s, cpu_s and wall_s
# Ceilings on what a check may ask of the sandbox (0 keeps the verifier's default).
MAX_MEMORY_MB = 16 << 10
MAX_OUTPUT_BYTES = 64 << 20  # stdout kept per test: it crosses back to this process
MAX_FILE_BYTES = 1 << 30
# What a result echoes back: an answer, and the output of each test, are cut to this.
MAX_ECHO_CHARS = 8_192
MAX_ECHO_OUTPUT_BYTES = 1 << 20  # per result, stdout and stderr of all tests together
MATH_CACHE_BYTES = 64 << 20
MATH_WAIT_S = 60.0  # how long a symbolic check waits for a free worker without a deadline

SandboxTest = StdioTest | CallTest | AssertTest


class NoAnswer(ValueError):
    """A well-formed check whose answer is empty (a model that wrote no program): answered
    NO_ANSWER, a wrong answer, as a math answer with nothing to extract is."""


@dataclass(frozen=True)
class Job:
    """A check that passed `validate`, with the code tests as the sandbox runs them."""

    check: Check
    tests: tuple[SandboxTest, ...] = ()


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
        self._math_cache: OrderedDict[bytes, CheckResult] = OrderedDict()
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

    def check_many(self, checks: Sequence[Check], deadline: float | None = None,
                   flow: object = None) -> list[CheckResult]:
        """Results in input order: each check validated (one this verifier refuses answered
        INVALID_REQUEST, an empty program NO_ANSWER), the rest run as jobs. Never raises for
        what a check holds or a broken sandbox. `deadline` (time.monotonic()) bounds every
        check; `flow` names the caller (one per client connection) whose turn symbolic math
        jobs take on the worker pool."""
        out: list[CheckResult | None] = [None] * len(checks)
        jobs: list[tuple[int, Job]] = []
        for i, check in enumerate(checks):
            started = time.monotonic()
            try:
                jobs.append((i, self.validate(check)))
            except (InvalidCheck, NoAnswer) as exc:
                verdict = Verdict.NO_ANSWER if isinstance(exc, NoAnswer) else \
                    Verdict.INVALID_REQUEST
                out[i] = CheckResult(verdict, message=str(exc),
                                     elapsed_ms=(time.monotonic() - started) * 1000)
            except Exception as exc:  # a bug reading some input: that check's answer only
                out[i] = internal_error(check, exc)
        for (i, _), result in zip(jobs, self.run([job for _, job in jobs], deadline, flow),
                                  strict=True):
            out[i] = result
        return out  # type: ignore[return-value]

    def validate(self, check: Check) -> Job:
        """The check as a job; InvalidCheck naming what this verifier refuses, NoAnswer for
        an empty program."""
        if not isinstance(check, MathCheck | ExactCheck | CodeCheck):
            raise InvalidCheck(f"not a check record: {type(check).__name__}")
        if check.timeout_s > MAX_TIMEOUT_S:
            raise InvalidCheck(f"timeout_s: must be between 0 and {MAX_TIMEOUT_S:g}")
        if isinstance(check, MathCheck) and not check.gold.strip():
            raise InvalidCheck("math.gold: empty")
        if isinstance(check, ExactCheck) and not check.target.strip():
            raise InvalidCheck("exact.target: empty")
        if not isinstance(check, CodeCheck):
            return Job(check)
        for name, value, ceiling, unit in (
                ("cpu_s", check.cpu_s, MAX_TIMEOUT_S, "s"),
                ("wall_s", check.wall_s, MAX_TIMEOUT_S, "s"),
                ("memory_mb", check.memory_mb, MAX_MEMORY_MB, "MiB"),
                ("output_bytes", check.output_bytes, MAX_OUTPUT_BYTES, "bytes"),
                ("file_bytes", check.file_bytes, MAX_FILE_BYTES, "bytes")):
            if value > ceiling:
                raise InvalidCheck(f"code.{name}: this verifier allows at most {ceiling:,g} "
                                   f"{unit}")
        tests = sandbox_tests(check)
        if not check.program.strip():  # checked last: the check is otherwise well formed
            raise NoAnswer("code.program: empty (no program to run)")
        return Job(check, tests)

    def run(self, jobs: list[Job], deadline: float | None = None, flow: object = None
            ) -> list[CheckResult]:
        """Results of validated jobs, in order. Math jobs are checked together (shared
        dedupe and the worker pool in parallel); code jobs in parallel on the sandbox pool.
        A job that fails inside is answered SANDBOX_ERROR; the others are not affected."""
        out: list[CheckResult | None] = [None] * len(jobs)
        math_groups: dict[tuple[str, bool, float], list[int]] = {}
        code: list[int] = []
        for i, job in enumerate(jobs):
            check = job.check
            if isinstance(check, MathCheck):
                math_groups.setdefault(self._math_key(check), []).append(i)
            elif isinstance(check, ExactCheck):
                started = time.monotonic()
                try:
                    result = _exact(check)
                except Exception as exc:
                    result = internal_error(check, exc)
                out[i] = replace(result, elapsed_ms=(time.monotonic() - started) * 1000)
            else:
                code.append(i)

        def run_code(i: int) -> CheckResult:
            try:
                return self._code(jobs[i], _deadline(jobs[i].check, deadline))
            except Exception as exc:
                return internal_error(jobs[i].check, exc)

        if len(code) == 1:
            out[code[0]] = run_code(code[0])
        elif code:  # in parallel, one per sandbox worker and then some
            workers = min(len(code), 2 * (self.sandbox_workers or os.cpu_count() or 1))
            with ThreadPoolExecutor(max_workers=workers) as threads:
                for i, result in zip(code, threads.map(run_code, code), strict=True):
                    out[i] = result
        for (mode, extract, timeout_s), indices in math_groups.items():
            started = time.monotonic()
            group = [jobs[i].check for i in indices]
            try:
                answers = self._math(group, mode, extract, timeout_s, deadline, flow)
            except Exception as exc:
                answers = [internal_error(c, exc) for c in group]
            elapsed = (time.monotonic() - started) * 1000  # the group's time, cache hits included
            for i, result in zip(indices, answers, strict=True):
                out[i] = replace(result, elapsed_ms=elapsed)
        return out  # type: ignore[return-value]

    def info(self) -> VerifierInfo:
        limits = self.default_limits
        return VerifierInfo(
            VERSION, (self.sandbox_backend,) if self.sandbox_backend else (), self.code_off,
            self.sandbox.size if self.sandbox else 0, self.math_pool.size,
            cpu_s=limits.cpu_s, wall_s=limits.wall_limit_s, memory_mb=limits.memory_mb,
            max_processes=self.max_processes, output_bytes=limits.output_bytes,
            file_bytes=limits.file_bytes)

    def close(self) -> None:
        if self.sandbox:
            self.sandbox.close()
        if self._own_math_pool:
            self.math_pool.close()

    # ------------------------------------------------------------------ kinds

    def _math_key(self, check: MathCheck) -> tuple[str, bool, float]:
        """(mode, extract, seconds for each symbolic check): a check's own timeout_s
        shortens only its own symbolic checks."""
        own = check.timeout_s if check.timeout_s > 0 else self.math_timeout_s
        return check.mode, check.extract, min(own, self.math_timeout_s)

    def _math(self, checks: list[MathCheck], mode: str, extract: bool, timeout_s: float,
              deadline: float | None, flow: object) -> list[CheckResult]:
        # Keys are digests: a cached entry costs its result, not the check's text.
        keys = [_math_digest(c.completion, c.gold, mode, extract) for c in checks]
        with self._lock:
            cached = {k: self._math_cache[k] for k in keys if k in self._math_cache}
            for k in cached:
                self._math_cache.move_to_end(k)
        todo = list(dict.fromkeys(k for k in keys if k not in cached))
        if todo:
            first = dict(zip(keys, checks, strict=True))
            wait_s = MATH_WAIT_S if deadline is None else max(deadline - time.monotonic(), 0.0)
            verdicts = check_many([(first[k].completion, first[k].gold) for k in todo],
                                  extract=extract, mode=mode, timeout_s=timeout_s,
                                  pool=self.math_pool, wait_s=wait_s, flow=flow)
            with self._lock:
                for key, v in zip(todo, verdicts, strict=True):
                    result = CheckResult(v.verdict, extracted=echo(v.extracted) or None,
                                         canonical=echo(v.canonical) or None,
                                         rule=v.rule or None, message=v.detail)
                    cached[key] = result
                    if v.verdict not in (Verdict.TIMEOUT, Verdict.SANDBOX_ERROR):
                        self._remember(key, result)  # a TIMEOUT may pass on a quieter machine
        return [cached[key] for key in keys]

    def _remember(self, key: bytes, result: CheckResult) -> None:
        """Cache a result, evicting the oldest past `cache_size` entries or
        MATH_CACHE_BYTES (lock held)."""
        if key in self._math_cache:
            return
        self._math_cache[key] = result
        self._cache_bytes += _result_bytes(result)
        while self._math_cache and (len(self._math_cache) > self._cache_size
                                    or self._cache_bytes > MATH_CACHE_BYTES):
            _, old = self._math_cache.popitem(last=False)
            self._cache_bytes -= _result_bytes(old)

    def _code(self, job: Job, deadline: float | None) -> CheckResult:
        if not self.sandbox_backend:
            return CheckResult(Verdict.INVALID_REQUEST, message=self.code_off)
        check = job.check
        assert isinstance(check, CodeCheck)
        result = self.start_sandbox().run(check.program, list(job.tests),
                                          code_limits(check, self.default_limits),
                                          profile=check.profile, run_all=check.run_all,
                                          deadline=deadline)
        budget = [MAX_ECHO_OUTPUT_BYTES]  # test output echoed back, all tests together
        tests = tuple(
            TestOutcome(t.passed, sandbox_verdict(t.status), t.exit_code or 0,
                        _echo_output(t.stdout, budget), _echo_output(t.stderr, budget),
                        t.cpu_s, t.wall_s, echo(t.detail))
            for t in result.tests
        )
        return CheckResult(sandbox_verdict(result.verdict), message=echo(result.detail),
                           tests=tests, forgeable=result.forgeable,
                           elapsed_ms=result.elapsed_s * 1000)


def _exact(check: ExactCheck) -> CheckResult:
    v = check_exact(check.completion, check.target, extract_answer=check.extract,
                    answer_format=check.answer_format)
    return CheckResult(v.verdict, extracted=echo(v.extracted) or None,
                       canonical=echo(v.extracted.casefold()) or None)


def _deadline(check: Check, deadline: float | None) -> float | None:
    """The call's deadline, or the check's own timeout when that ends first."""
    if check.timeout_s > 0:
        own = time.monotonic() + check.timeout_s
        deadline = own if deadline is None else min(deadline, own)
    return deadline


def _math_digest(completion: str, gold: str, mode: str, extract: bool) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    for part in (completion, gold):  # a record holds no lone surrogate; kept safe anyway
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    h.update(f"{mode}:{extract}".encode())
    return h.digest()


def _result_bytes(result: CheckResult) -> int:
    """What a cached result holds in memory, its strings by their real size (a character
    outside Latin-1 costs 2 or 4 bytes), plus the record itself."""
    return 200 + sum(sys.getsizeof(text) for text in (result.extracted, result.canonical,
                                                       result.rule, result.message) if text)


def echo(text: str | None) -> str:
    """What a result carries of an answer or message: at most MAX_ECHO_CHARS of it."""
    if not text:
        return ""
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + " [...]"


def _echo_output(text: str, budget: list[int]) -> str:
    """Test output echoed back, from a budget shared by one result's tests."""
    if not text or budget[0] <= 0:
        return ""
    cut = text[: budget[0]]
    budget[0] -= len(cut)
    return cut


def internal_error(check: object, exc: BaseException) -> CheckResult:
    """SANDBOX_ERROR for a check that broke something inside (logged with its trace)."""
    log.error("internal error on a %s", type(check).__name__, exc_info=exc)
    return CheckResult(Verdict.SANDBOX_ERROR, message=f"internal error: {type(exc).__name__}")


# ---------------------------------------------------------------------- code tests


def sandbox_tests(check: CodeCheck) -> tuple[SandboxTest, ...]:
    """The record's tests as the sandbox runs them, or InvalidCheck naming the field."""
    tests = check.tests
    kind = {StdioTests: "stdio", CallTests: "call", AssertTests: "asserts"}[type(tests)]
    try:
        if isinstance(tests, AssertTests):
            return (AssertTest(tests.test_code, tests.entry_point, prompt=tests.prompt),)
        if not tests.cases:
            raise InvalidCheck(f"code.{kind}.cases: empty")
        if isinstance(tests, StdioTests):
            return tuple(StdioTest(stdin, stdout) for stdin, stdout in tests.cases)
        return tuple(CallTest(tests.fn_name, args, expected) for args, expected in tests.cases)
    except InvalidCheck:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidCheck(f"code.{kind}: {str(exc)[:300]}") from None


def code_limits(check: CodeCheck, default: Limits) -> Limits:
    """The check's limits over the verifier's defaults (0 keeps the default)."""
    return Limits(
        cpu_s=check.cpu_s or default.cpu_s,
        wall_s=check.wall_s or default.wall_s,
        memory_mb=check.memory_mb or default.memory_mb,
        output_bytes=check.output_bytes or default.output_bytes,
        file_bytes=check.file_bytes or default.file_bytes,
        open_files=default.open_files,
    )
