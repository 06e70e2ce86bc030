"""The shared records of `evals.checks` on the wire (`restem_proto.v1`), in one place:

    to_request(MathCheck(completion, gold), request_id="q1")   # pb.VerifyRequest
    to_result(response)                                       # CheckResult
    verdict_to_pb(Verdict.PASS), verdict_from_pb(pb.PASS)     # one mapping, both ways

and the names of the wire's math modes and compare profiles, and the bearer token file that
client and server both read. Every mapping fails loudly on a name or number the other side
does not know.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.checks import (
    MATH_MODES,
    PROFILES,
    AssertTests,
    CallTests,
    Check,
    CheckResult,
    CodeCheck,
    ExactCheck,
    MathCheck,
    StdioTests,
    Verdict,
)
from restem_proto.v1 import verifier_pb2 as pb

# Record names to wire numbers, by the proto's naming (a missing one fails at import).
MODE_NUMBERS = {name: pb.MathMode.Value(f"MATH_MODE_{name.upper()}") for name in MATH_MODES}
PROFILE_NUMBERS = {name: pb.CompareProfile.Value(f"COMPARE_PROFILE_{name.upper()}")
                   for name in PROFILES}
# Wire numbers to names; UNSPECIFIED (0) reads as the first name.
MODE_NAMES = {0: MATH_MODES[0]} | {number: name for name, number in MODE_NUMBERS.items()}
PROFILE_NAMES = {0: PROFILES[0]} | {number: name for name, number in PROFILE_NUMBERS.items()}


class TokenFileError(ValueError):
    """The bearer token file is missing, unreadable or empty."""


def read_token(path: Path) -> str:
    """The bearer token from a file (never from the command line, where `ps` shows it)."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise TokenFileError(f"the token file {path} cannot be read: {exc.strerror}") from None
    if not token:
        raise TokenFileError(f"the token file {path} is empty")
    return token


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


def to_request(check: Check, *, request_id: str = "", timeout_s: float = 0.0
               ) -> pb.VerifyRequest:
    """The protobuf request for a check record (the only place one is built)."""
    request = pb.VerifyRequest(request_id=request_id, timeout_s=timeout_s)
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
        case _:
            raise TypeError(f"not a check record: {type(check).__name__}")
    return request


def _code_task(check: CodeCheck) -> pb.CodeTask:
    task = pb.CodeTask(program=check.program, profile=PROFILE_NUMBERS[check.profile],
                       run_all_tests=check.run_all,
                       limits=pb.Limits(cpu_time_s=check.cpu_s,
                                        memory_bytes=check.memory_mb * 2**20))
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


def to_result(response: pb.VerifyResponse) -> CheckResult:
    """A response as a CheckResult (empty strings on the wire are None here)."""
    return CheckResult(verdict_from_pb(response.verdict), extracted=response.extracted or None,
                       canonical=response.canonical or None, rule=response.rule or None,
                       message=response.message)
