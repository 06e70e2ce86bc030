"""The shared records of `evals.checks` on the wire (`restem_proto.v1`), in one place, used
only by the gRPC client and the gRPC service:

    to_request(MathCheck(completion, gold), request_id="q1")   # client: pb.VerifyRequest
    from_request(request)                                     # service: the record again
    to_response(result, request_id="q1")                      # service: pb.VerifyResponse
    to_result(response)                                       # client: CheckResult
    info_to_pb(info), info_from_pb(server_info)               # VerifierInfo both ways
    verdict_to_pb(Verdict.PASS), verdict_from_pb(pb.PASS)     # one mapping, both ways

and the names of the wire's math modes and compare profiles. Every mapping fails loudly on a
name or number the other side does not know.
"""

from __future__ import annotations

import json
from typing import Any

from evals.checks import (
    ANSWER_FORMATS,
    MATH_MODES,
    MAX_CASES,
    PROFILES,
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
    Tests,
    Verdict,
    VerifierInfo,
)
from restem_proto.v1 import verifier_pb2 as pb

# Record names to wire numbers, by the proto's naming (a missing one fails at import).
MODE_NUMBERS = {name: pb.MathMode.Value(f"MATH_MODE_{name.upper()}") for name in MATH_MODES}
PROFILE_NUMBERS = {name: pb.CompareProfile.Value(f"COMPARE_PROFILE_{name.upper()}")
                   for name in PROFILES}
# Wire numbers to names; UNSPECIFIED (0) reads as the first name.
MODE_NAMES = {0: MATH_MODES[0]} | {number: name for name, number in MODE_NUMBERS.items()}
PROFILE_NAMES = {0: PROFILES[0]} | {number: name for name, number in PROFILE_NUMBERS.items()}
MAX_JSON_ITEMS = 1_000_000  # values in a request's call tests, all cases together: counted
# before they are parsed (the records bound what they hold once built)


def verdict_to_pb(verdict: Verdict) -> int:
    """The wire number of a verdict; ValueError for a name the wire does not have."""
    try:
        return pb.Verdict.Value(Verdict(verdict).value)
    except ValueError:
        raise ValueError(f"{verdict!r} is not a verdict the wire knows") from None


def verdict_from_pb(number: int) -> Verdict:
    """The verdict of a wire number; ValueError for VERDICT_UNSPECIFIED or an unknown one."""
    try:
        return Verdict(pb.Verdict.Name(number))
    except ValueError:
        raise ValueError(f"wire verdict {number} is not a Verdict") from None


def to_request(check: Check, *, request_id: str = "") -> pb.VerifyRequest:
    """The protobuf request for a check record (the only place one is built)."""
    if not isinstance(check, MathCheck | ExactCheck | CodeCheck):
        raise TypeError(f"not a check record: {type(check).__name__}")
    request = pb.VerifyRequest(request_id=request_id, timeout_s=check.timeout_s)
    match check:
        case MathCheck():
            request.math.CopyFrom(pb.MathTask(completion=check.completion, gold=check.gold,
                                              extract=check.extract,
                                              mode=MODE_NUMBERS[check.mode]))
        case ExactCheck():
            request.exact.CopyFrom(pb.ExactTask(completion=check.completion,
                                                target=check.target,
                                                answer_format=check.answer_format,
                                                extract=check.extract))
        case CodeCheck():
            request.code.CopyFrom(_code_task(check))
    return request


def _code_task(check: CodeCheck) -> pb.CodeTask:
    task = pb.CodeTask(program=check.program, profile=PROFILE_NUMBERS[check.profile],
                       run_all_tests=check.run_all,
                       limits=pb.Limits(cpu_time_s=check.cpu_s, wall_time_s=check.wall_s,
                                        memory_bytes=check.memory_mb * 2**20,
                                        max_output_bytes=check.output_bytes,
                                        max_file_bytes=check.file_bytes))
    tests = check.tests
    match tests:
        case StdioTests():
            task.stdio.cases.extend(pb.StdioCase(stdin=i, expected_stdout=o)
                                    for i, o in tests.cases)
        case CallTests():
            task.call.fn_name = tests.fn_name
            task.call.cases.extend(
                pb.CallCase(args_json=json.dumps(args), expected_json=json.dumps(expected))
                for args, expected in tests.cases)
        case AssertTests():
            task.asserts.CopyFrom(pb.AssertTests(test_code=tests.test_code,
                                                 entry_point=tests.entry_point,
                                                 prompt=tests.prompt))
    return task


def from_request(request: pb.VerifyRequest) -> Check:
    """The check record a request carries, or InvalidCheck naming the field that is wrong
    (wire fields by their proto path, record fields by their record name). Call test values
    are parsed at bounded cost; what only the verifier judges (an empty gold, a ceiling)
    is left to it. The request id is not part of the check: the service keeps it."""
    kind = request.WhichOneof("task")
    if kind is None:
        raise InvalidCheck("task: none of math, exact, code is set")
    timeout_s = request.timeout_s
    if kind == "math":
        task = request.math
        if task.mode not in MODE_NAMES:
            raise InvalidCheck(f"math.mode: unknown value {task.mode}")
        return MathCheck(task.completion, task.gold, MODE_NAMES[task.mode], task.extract,
                         timeout_s=timeout_s)
    if kind == "exact":
        task = request.exact
        if task.answer_format not in ANSWER_FORMATS:
            raise InvalidCheck("exact.answer_format: must be multiple_choice or free_text")
        return ExactCheck(task.completion, task.target, task.answer_format, task.extract,
                          timeout_s=timeout_s)
    code = request.code
    if code.profile not in PROFILE_NAMES:
        raise InvalidCheck(f"code.profile: unknown value {code.profile}")
    limits = code.limits  # the record checks each value; max_processes is the service's
    if limits.memory_bytes < 0:
        raise InvalidCheck("code.limits.memory_bytes: negative")
    return CodeCheck(code.program, _tests(code), cpu_s=limits.cpu_time_s,
                     memory_mb=limits.memory_bytes // 2**20,
                     profile=PROFILE_NAMES[code.profile], run_all=code.run_all_tests,
                     wall_s=limits.wall_time_s, output_bytes=limits.max_output_bytes,
                     file_bytes=limits.max_file_bytes, timeout_s=timeout_s)


def _tests(code: pb.CodeTask) -> Tests:
    which = code.WhichOneof("tests")
    if which is None:
        raise InvalidCheck("code.tests: none of stdio, call, asserts is set")
    if which == "stdio":
        _case_count("code.stdio.cases", len(code.stdio.cases))
        return StdioTests(tuple((c.stdin, c.expected_stdout) for c in code.stdio.cases))
    if which == "call":
        call = code.call
        _case_count("code.call.cases", len(call.cases))
        budget = [2 * MAX_JSON_ITEMS]
        return CallTests(call.fn_name, tuple(
            (_json(c.args_json, f"code.call.cases[{i}].args_json", budget, array=True),
             _json(c.expected_json, f"code.call.cases[{i}].expected_json", budget))
            for i, c in enumerate(call.cases)))
    a = code.asserts
    return AssertTests(a.test_code, a.entry_point, a.prompt)


def _case_count(field: str, count: int) -> None:
    """The records' bound, applied before the cases are read."""
    if count > MAX_CASES:
        raise InvalidCheck(f"{field}: more than {MAX_CASES:,}")


def _json(text: str, field: str, budget: list[int], *, array: bool = False) -> Any:
    """A call test's JSON value, parsed at bounded cost. `budget` holds how many values the
    request's cases may still hold together: they are counted before parsing (a 64 MB
    `[{},{},...]` costs gigabytes parsed). Nesting deeper than Python's recursion limit
    (`[[[...]]]` 100,000 deep) makes json raise RecursionError, which is caught here;
    shallower nesting past MAX_VALUE_DEPTH is refused by the record."""
    budget[0] -= text.count("[") + text.count("{") + text.count(",")
    if budget[0] < 0:
        raise InvalidCheck(f"{field}: the call cases hold more than {MAX_JSON_ITEMS:,} "
                           "values together")
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidCheck(f"{field}: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and ints over the digit limit
        raise InvalidCheck(f"{field}: not JSON ({str(exc)[:200]})") from None
    if array and not isinstance(value, list):
        raise InvalidCheck(f"{field}: must be a JSON array of positional arguments")
    return value


def to_response(result: CheckResult, request_id: str = "") -> pb.VerifyResponse:
    """The protobuf response for a result (the only place one is built)."""
    return pb.VerifyResponse(
        request_id=request_id, verdict=verdict_to_pb(result.verdict),
        reward=1.0 if result.passed else 0.0, extracted=result.extracted or "",
        canonical=result.canonical or "", rule=result.rule or "", message=result.message,
        forgeable=result.forgeable, elapsed_ms=result.elapsed_ms,
        tests=[pb.TestResult(passed=t.passed, verdict=verdict_to_pb(t.verdict),
                             exit_code=t.exit_code, stdout=t.stdout, stderr=t.stderr,
                             cpu_time_s=t.cpu_s, wall_time_s=t.wall_s, detail=t.detail)
               for t in result.tests])


def to_result(response: pb.VerifyResponse) -> CheckResult:
    """A response as a CheckResult (empty strings on the wire are None here)."""
    return CheckResult(
        verdict_from_pb(response.verdict), extracted=response.extracted or None,
        canonical=response.canonical or None, rule=response.rule or None,
        message=response.message, forgeable=response.forgeable,
        elapsed_ms=response.elapsed_ms,
        tests=tuple(TestOutcome(t.passed, verdict_from_pb(t.verdict), t.exit_code, t.stdout,
                                t.stderr, t.cpu_time_s, t.wall_time_s, t.detail)
                    for t in response.tests))


def info_to_pb(info: VerifierInfo) -> pb.ServerInfo:
    return pb.ServerInfo(
        version=info.version, sandbox_backends=list(info.sandbox_backends),
        code_off=info.code_off, sandbox_workers=info.sandbox_workers,
        math_workers=info.math_workers, max_queue=info.max_queue, in_flight=info.in_flight,
        default_limits=pb.Limits(cpu_time_s=info.cpu_s, wall_time_s=info.wall_s,
                                 memory_bytes=info.memory_mb * 2**20,
                                 max_processes=info.max_processes,
                                 max_output_bytes=info.output_bytes,
                                 max_file_bytes=info.file_bytes))


def info_from_pb(info: pb.ServerInfo) -> VerifierInfo:
    limits = info.default_limits
    return VerifierInfo(
        info.version, tuple(info.sandbox_backends), info.code_off, info.sandbox_workers,
        info.math_workers, cpu_s=limits.cpu_time_s, wall_s=limits.wall_time_s,
        memory_mb=limits.memory_bytes // 2**20, max_processes=limits.max_processes,
        output_bytes=limits.max_output_bytes, file_bytes=limits.max_file_bytes,
        max_queue=info.max_queue, in_flight=info.in_flight)
