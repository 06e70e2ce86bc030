"""The `Verifier` protocol that `VerifierClient` and `LocalVerifier` implement: check records
in, `CheckResult`s out, in order.

    with open_verifier() as verifier:                   # restem_client.client
        results = verifier.check_many([
            MathCheck("... \\boxed{12}", "12"),
            ExactCheck("So the answer is (B).", "(B)"),
            CodeCheck(program, StdioTests((("3 4\n", "7\n"),))),
        ])
        results[0].passed, results[0].canonical

The records and results are `evals.checks`; protobuf exists only between the gRPC client
and the service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc

from evals.checks import Check, CheckResult, VerifierInfo


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
    when it passes, the call raises VerifyTimeout. Each check's own `timeout_s` bounds
    that check. Subclass it to inherit the context manager."""

    def check_many(self, checks: Sequence[Check], *, progress: bool = False,
                   timeout_s: float | None = None) -> list[CheckResult]:
        """Every check answered once, in input order."""
        ...

    def info(self) -> VerifierInfo: ...

    def close(self) -> None: ...

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
