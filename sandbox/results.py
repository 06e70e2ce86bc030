"""What a run reports: the status words, one entry per test, and raw executions.

`Status` is shared by `RunResult.verdict` and `Execution.status`. For a raw execution,
PASS means the program ran to completion and exited 0; nothing was judged.
SANDBOX_ERROR is an internal failure (retried on a fresh worker first) and never a verdict
about the program. INVALID_REQUEST says the tests cannot judge it: test code that is not
valid, or that exits, loops, allocates past its limits or raises on its own account (a
broken test, never the candidate's FAIL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    COMPILE_ERROR = "COMPILE_ERROR"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    TIMEOUT = "TIMEOUT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    SANDBOX_ERROR = "SANDBOX_ERROR"
    INVALID_REQUEST = "INVALID_REQUEST"


# Statuses after which a worker is replaced before it runs anything else (but a TIMEOUT
# that left nothing behind: the pool checks that worker and keeps it when it is clean).
ANOMALIES = frozenset(
    {Status.TIMEOUT, Status.MEMORY_LIMIT, Status.OUTPUT_LIMIT, Status.SANDBOX_ERROR}
)
DEADLINE_PASSED = "the request's deadline passed"  # the detail of a caller's deadline TIMEOUT
KEEP_TEXT = 2048  # characters of stdout/stderr kept per test in results


@dataclass(frozen=True)
class Execution:
    """One run of a program, as observed from outside."""

    status: Status
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    cpu_s: float = 0.0
    wall_s: float = 0.0
    max_rss_kb: int = 0
    leftovers: int = 0  # processes the run left behind (all killed)
    detail: str = ""
    results: tuple[str, ...] = ()  # call jobs: one typed-JSON line per answered call

    @classmethod
    def from_wire(cls, reply: dict) -> Execution:
        return cls(
            status=Status(reply["status"]),
            exit_code=reply.get("exit_code"),
            signal=reply.get("signal"),
            stdout=reply.get("stdout", ""),
            stderr=reply.get("stderr", ""),
            stdout_truncated=reply.get("stdout_truncated", False),
            cpu_s=reply.get("cpu_s", 0.0),
            wall_s=reply.get("wall_s", 0.0),
            max_rss_kb=reply.get("max_rss_kb", 0),
            leftovers=reply.get("leftovers", 0),
            detail=reply.get("compile_error") or reply.get("error") or "",
            results=tuple(reply.get("results", ())),
        )


def printable(text: str) -> str:
    """`text` with lone surrogates replaced: a program's message can carry them (as escaped
    JSON), and protobuf refuses to encode them, which would lose a whole batch."""
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class TestResult:
    passed: bool
    status: Status
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    cpu_s: float = 0.0
    wall_s: float = 0.0
    detail: str = ""  # why it failed, in words

    __test__ = False  # not a pytest test class

    def __post_init__(self) -> None:
        for name in ("stdout", "stderr", "detail"):
            object.__setattr__(self, name, printable(getattr(self, name)))


@dataclass(frozen=True)
class RunResult:
    verdict: Status
    tests: list[TestResult] = field(default_factory=list)
    forgeable: bool = False  # True only for reference-compatible runs of the original check()
    detail: str = ""
    elapsed_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", printable(self.detail))

    @property
    def passed(self) -> bool:
        return self.verdict is Status.PASS
