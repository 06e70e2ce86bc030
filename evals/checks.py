"""One check request and its result, typed: the records every layer shares.

    MathCheck("... \\boxed{12}", "12")                       # mode "math" or "gsm8k"
    ExactCheck("So the answer is (B).", "(B)")               # BIG-Bench Hard style
    CodeCheck(program, StdioTests((("3 4\\n", "7\\n"),)))     # or CallTests, AssertTests
    MathCheck(completion, gold, timeout_s=5)                 # any check: its own time budget
    CheckResult(Verdict.PASS, extracted="12", canonical="12", rule="boxed")
    CheckResult(Verdict.FAIL, tests=(TestOutcome(False, Verdict.FAIL, stdout="6\\n"),))
    VerifierInfo("1.0.0", ("docker",), cpu_s=4.0)             # what a verifier offers

`Verdict` is the one verdict vocabulary: the names of `enum Verdict` in
proto/restem_proto/v1/verifier.proto (less VERDICT_UNSPECIFIED); the sandbox's `Status` and
the math and exact checkers use these names. These records are what every verifier takes and
answers, in process and over gRPC; `verifier_server.wire` alone maps them to and from
protobuf, `evals.score` reads input lines into records.

A record checks its fields when it is built: `InvalidCheck` names the field that is wrong,
as `restem score` reports it for a line. What only the verifier can judge (an empty gold,
tests that are not JSON) comes back as an INVALID_REQUEST result instead. Every check is
cheap and bounded, and what a record holds can always be sent: strings are Unicode text (a
lone surrogate, which JSON's `\\ud800` escape makes and UTF-8 cannot carry, is refused),
call test values are plain JSON values at most MAX_VALUE_DEPTH deep with integers JSON can
print, and limits fit the wire. Standard library only, so that `evals` stays a leaf.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NO_ANSWER = "NO_ANSWER"
    COMPILE_ERROR = "COMPILE_ERROR"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    TIMEOUT = "TIMEOUT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    SANDBOX_ERROR = "SANDBOX_ERROR"  # an internal failure, never a wrong answer
    INVALID_REQUEST = "INVALID_REQUEST"


class InvalidCheck(ValueError):
    """A check that cannot be built; the message names the field."""


MATH_MODES = ("math", "gsm8k")
ANSWER_FORMATS = ("", "multiple_choice", "free_text")  # "": inferred from the target
PROFILES = ("strict", "apps", "human_eval")  # how code output is compared (see the proto)
TEST_KINDS = ("stdio", "call", "asserts")


MAX_CASES = 10_000  # tests in one code check (APPS problems have at most a few hundred)
MAX_VALUE_DEPTH = 64  # nesting of a call test's values (the sandbox's own limit)
MAX_VALUE_ITEMS = 1_000_000  # values in one call test's arguments or expected value
MAX_MEMORY_MB = 2**43 - 1  # memory_mb * 2**20 must fit the wire's int64
MAX_BYTES = 2**63 - 1  # byte limits travel as int64


def _string(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidCheck(f"field {name!r} must be a string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidCheck(f"field {name!r} holds a lone surrogate "
                               f"({value[exc.start]!a} at character {exc.start}), which "
                               "is not Unicode text") from None


def _json_value(name: str, value: Any) -> None:
    """A plain JSON value (None, bool, int, float, str, list, tuple, dict with string
    keys), at most MAX_VALUE_DEPTH deep and MAX_VALUE_ITEMS big, checked without
    recursion."""
    stack, items = [(value, 0)], 0
    digits = sys.get_int_max_str_digits() or 0
    while stack:
        x, depth = stack.pop()
        items += 1
        if items > MAX_VALUE_ITEMS:
            raise InvalidCheck(f"field {name!r} holds more than {MAX_VALUE_ITEMS:,} values")
        if depth > MAX_VALUE_DEPTH:
            raise InvalidCheck(f"field {name!r} is nested deeper than {MAX_VALUE_DEPTH}")
        if x is None or isinstance(x, bool | float):
            continue
        if isinstance(x, int):
            if digits and x.bit_length() > digits * 3.3219280948873626:  # log2(10)
                raise InvalidCheck(f"field {name!r} holds an integer of more than {digits} "
                                   "digits")
        elif isinstance(x, str):
            _string(name, x)
        elif isinstance(x, list | tuple):
            stack.extend((v, depth + 1) for v in x)
        elif isinstance(x, dict):
            for k, v in x.items():
                if not isinstance(k, str):
                    raise InvalidCheck(f"field {name!r} holds a dict key that is not a "
                                       f"string ({type(k).__name__})")
                _string(name, k)
                stack.append((v, depth + 1))
        else:
            raise InvalidCheck(f"field {name!r} holds a {type(x).__name__}, not a JSON value")


def _seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value)
                                       and value >= 0):
        raise InvalidCheck(f"field {name!r} must be a number of seconds >= 0")


def _count(name: str, value: Any, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise InvalidCheck(f"field {name!r} must be a whole number from 0 to {most}")


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidCheck(f"field {name!r} must be true or false")


def _one_of(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        named = " or ".join(repr(c) for c in choices)
        raise InvalidCheck(f"field {name!r} must be {named}, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class _Check:
    """What every check carries: `timeout_s`, seconds for this check alone (0: the
    verifier's default; a call's own timeout bounds it too)."""

    timeout_s: float = 0.0

    def __post_init__(self) -> None:
        _seconds("timeout_s", self.timeout_s)


@dataclass(frozen=True)
class MathCheck(_Check):
    """Is the final answer of `completion` equal to `gold`? `extract` False: the completion
    is the bare answer already."""

    completion: str
    gold: str
    mode: str = "math"
    extract: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _string("completion", self.completion)
        _string("gold", self.gold)
        _one_of("mode", self.mode, MATH_MODES)
        _flag("extract", self.extract)


@dataclass(frozen=True)
class ExactCheck(_Check):
    """Does the answer after "the answer is" in `completion` match `target` (BBH style)?"""

    completion: str
    target: str
    answer_format: str = ""
    extract: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _string("completion", self.completion)
        _string("target", self.target)
        _one_of("answer_format", self.answer_format, ANSWER_FORMATS)
        _flag("extract", self.extract)


def _pairs(name: str, cases: Any) -> None:
    if not (isinstance(cases, list | tuple) and all(
        isinstance(c, list | tuple) and len(c) == 2 for c in cases
    )):
        raise InvalidCheck(f"field {name!r} must be a list of [input, expected]")
    if len(cases) > MAX_CASES:
        raise InvalidCheck(f"field {name!r} holds more than {MAX_CASES:,} cases")


@dataclass(frozen=True)
class StdioTests:
    cases: tuple[tuple[str, str], ...]  # (stdin, expected stdout)

    def __post_init__(self) -> None:
        _pairs("tests.stdio.cases", self.cases)
        for i, (stdin, stdout) in enumerate(self.cases):
            _string(f"tests.stdio.cases[{i}][0]", stdin)
            _string(f"tests.stdio.cases[{i}][1]", stdout)


@dataclass(frozen=True)
class CallTests:
    fn_name: str  # a top-level function or a method of class Solution
    cases: tuple[tuple[list[Any], Any], ...]  # (positional arguments, expected return value)

    def __post_init__(self) -> None:
        _string("tests.call.fn_name", self.fn_name)
        _pairs("tests.call.cases", self.cases)
        for i, (args, expected) in enumerate(self.cases):
            if not isinstance(args, list | tuple):
                raise InvalidCheck(f"field 'tests.call.cases[{i}][0]' must be a list of "
                                   "arguments")
            _json_value(f"tests.call.cases[{i}][0]", args)
            _json_value(f"tests.call.cases[{i}][1]", expected)


@dataclass(frozen=True)
class AssertTests:
    test_code: str  # HumanEval style: defines check(candidate)
    entry_point: str
    prompt: str = ""  # the dataset prompt: trusted helpers the test code may call

    def __post_init__(self) -> None:
        for name in ("test_code", "entry_point", "prompt"):
            _string(f"tests.asserts.{name}", getattr(self, name))


Tests = StdioTests | CallTests | AssertTests


@dataclass(frozen=True)
class CodeCheck(_Check):
    """Does `program` pass `tests`? Limits, per test, of 0 keep the verifier's defaults
    (`cpu_s` decides TIMEOUT, `wall_s` only catches sleepers, `output_bytes` is the stdout
    kept, `file_bytes` the largest file written); `run_all` runs every test instead of
    stopping at the first failure."""

    program: str
    tests: Tests
    cpu_s: float = 0.0
    memory_mb: int = 0
    profile: str = "strict"
    run_all: bool = False
    wall_s: float = 0.0
    output_bytes: int = 0
    file_bytes: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _string("program", self.program)
        if not isinstance(self.tests, StdioTests | CallTests | AssertTests):
            raise InvalidCheck("field 'tests' must be StdioTests, CallTests or AssertTests")
        _seconds("cpu_s", self.cpu_s)
        _seconds("wall_s", self.wall_s)
        _count("memory_mb", self.memory_mb, MAX_MEMORY_MB)
        _count("output_bytes", self.output_bytes, MAX_BYTES)
        _count("file_bytes", self.file_bytes, MAX_BYTES)
        _one_of("profile", self.profile, PROFILES)
        _flag("run_all", self.run_all)


Check = MathCheck | ExactCheck | CodeCheck


@dataclass(frozen=True)
class TestOutcome:
    """One test of a code check, as the sandbox saw it (`stdout`, `stderr` and `detail`
    cut short)."""

    passed: bool
    verdict: Verdict
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    cpu_s: float = 0.0
    wall_s: float = 0.0
    detail: str = ""

    __test__ = False


@dataclass(frozen=True)
class CheckResult:
    """The verifier's answer to one check: `extracted` is the answer found (math, exact),
    `canonical` its key for majority voting, `rule` the extraction rule that fired (math);
    `message` says why, for errors. Code: `tests`, one outcome per test run, and
    `forgeable`, True when the verdict came from code run inside the jail (the human_eval
    profile). `elapsed_ms`: the verifier's time on it (not compared)."""

    verdict: Verdict
    extracted: str | None = None
    canonical: str | None = None
    rule: str | None = None
    message: str = ""
    tests: tuple[TestOutcome, ...] = ()
    forgeable: bool = False
    elapsed_ms: float = field(default=0.0, compare=False)

    @property
    def passed(self) -> bool:
        return Verdict(self.verdict) is Verdict.PASS


@dataclass(frozen=True)
class VerifierInfo:
    """What a verifier offers: `sandbox_backends`, the backend code runs on (empty: no code
    checks, and `code_off` says why and how to turn them on); the default limits of each
    code test (`cpu_s` ... `file_bytes`, what a CodeCheck's 0 means; `max_processes` per
    sandbox worker); and, from a service only, its queue (`max_queue` checks admitted at
    once, `in_flight` now)."""

    version: str
    sandbox_backends: tuple[str, ...] = ()
    code_off: str = ""
    sandbox_workers: int = 0
    math_workers: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    memory_mb: int = 0
    max_processes: int = 0
    output_bytes: int = 0
    file_bytes: int = 0
    max_queue: int = 0
    in_flight: int = 0


def parse_tests(value: Any) -> Tests:
    """Tests from their JSON form: {"stdio": {"cases": [[stdin, stdout], ...]}},
    {"call": {"fn_name", "cases": [[args, expected], ...]}} or {"asserts": {"test_code",
    "entry_point", "prompt"}}."""
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in TEST_KINDS:
        raise InvalidCheck("field 'tests' must be an object with one of stdio, call, asserts")
    (kind, body), = value.items()
    if not isinstance(body, dict):
        raise InvalidCheck(f"field 'tests.{kind}' must be an object")
    needs = {"stdio": ("cases",), "call": ("fn_name", "cases"),
             "asserts": ("test_code", "entry_point")}[kind]
    for name in needs:
        if name not in body:
            raise InvalidCheck(f"missing field 'tests.{kind}.{name}'")
    if kind == "asserts":
        return AssertTests(body["test_code"], body["entry_point"], body.get("prompt", ""))
    cases = body["cases"]
    if not isinstance(cases, list):  # a JSON list; the records check each case
        raise InvalidCheck(f"field 'tests.{kind}.cases' must be a list of [input, expected]")
    if kind == "stdio":
        return StdioTests(tuple(tuple(c) if isinstance(c, list) else c for c in cases))
    _pairs("tests.call.cases", cases)
    return CallTests(body["fn_name"], tuple(
        (list(args) if isinstance(args, list | tuple) else args, want) for args, want in cases))
