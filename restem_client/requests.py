"""The `Verifier` protocol that `VerifierClient` and `LocalVerifier` implement, and friendly
builders of its requests.

    math_request("... \\boxed{12}", "12")
    exact_request("So the answer is (B).", "(B)")
    code_request(program, stdio=[("3 4\\n", "7\\n")])
    code_request(program, calls=("add", [([3, 4], 7)]))
    code_request(prompt + completion, asserts=(test_code, "add", prompt))

Each builder makes the `evals.checks` record and hands it to `verifier_server.wire`, where
protobuf is built. `verify`/`verify_many` take protobuf requests; `check_many` takes check
records and answers `CheckResult`s (what `evals.score` uses).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import grpc

from evals.checks import (
    AssertTests,
    CallTests,
    Check,
    CheckResult,
    CodeCheck,
    ExactCheck,
    MathCheck,
    StdioTests,
    Tests,
)
from restem_proto.v1 import verifier_pb2 as pb
from verifier_server.wire import to_request, to_result


class VerifyTimeout(grpc.RpcError, TimeoutError):
    """A call's `timeout_s` passed before every answer came back. Raised by both verifiers;
    like the service's own answer it is a grpc.RpcError with DEADLINE_EXCEEDED."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the call's timeout of {timeout_s:g} s passed before every answer "
                         "came back")

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return str(self)


class Verifier(Protocol):
    """What every verifier offers. `timeout_s`: seconds for the call (None: no limit);
    when it passes, the call raises VerifyTimeout. Each request's own `timeout_s` bounds
    that request. Subclass it to inherit `check_many` and the context manager."""

    def verify(self, request: pb.VerifyRequest, timeout_s: float | None = None
               ) -> pb.VerifyResponse: ...

    def verify_many(self, requests: Iterable[pb.VerifyRequest], *, progress: bool = False,
                    timeout_s: float | None = None) -> list[pb.VerifyResponse]:
        """Every request answered once, in input order."""
        ...

    def info(self) -> pb.ServerInfo: ...

    def close(self) -> None: ...

    def check_many(self, checks: Sequence[Check], *, progress: bool = False,
                   timeout_s: float | None = None) -> list[CheckResult]:
        """Check records in, their results out, in order."""
        responses = self.verify_many([to_request(c) for c in checks], progress=progress,
                                     timeout_s=timeout_s)
        return [to_result(r) for r in responses]

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def math_request(completion: str, gold: str, *, mode: str = "math", extract: bool = True,
                 request_id: str = "", timeout_s: float = 0.0) -> pb.VerifyRequest:
    return to_request(MathCheck(completion, gold, mode, extract), request_id=request_id,
                      timeout_s=timeout_s)


def exact_request(completion: str, target: str, *, answer_format: str = "",
                  extract: bool = True, request_id: str = "") -> pb.VerifyRequest:
    return to_request(ExactCheck(completion, target, answer_format, extract),
                      request_id=request_id)


def code_request(
    program: str,
    *,
    stdio: list[tuple[str, str]] | None = None,
    calls: tuple[str, list[tuple[list, Any]]] | None = None,
    asserts: tuple[str, str] | tuple[str, str, str] | None = None,
    cpu_s: float = 0.0,
    memory_mb: int = 0,
    profile: str = "strict",
    run_all: bool = False,
    request_id: str = "",
    timeout_s: float = 0.0,
) -> pb.VerifyRequest:
    """Exactly one of stdio (stdin, expected stdout) pairs, calls (fn_name, [(args, expected)])
    or asserts (test_code, entry_point[, prompt])."""
    if sum(x is not None for x in (stdio, calls, asserts)) != 1:
        raise ValueError("give exactly one of stdio=, calls=, asserts=")
    if stdio is not None:
        tests: Tests = StdioTests(tuple((i, o) for i, o in stdio))
    elif calls is not None:
        fn_name, cases = calls
        tests = CallTests(fn_name, tuple((list(args), want) for args, want in cases))
    else:
        tests = AssertTests(*asserts)
    check = CodeCheck(program, tests, cpu_s=cpu_s, memory_mb=memory_mb, profile=profile,
                      run_all=run_all)
    return to_request(check, request_id=request_id, timeout_s=timeout_s)
