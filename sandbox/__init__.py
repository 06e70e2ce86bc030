"""Hardened execution of untrusted programs, judged on the trusted side.

    from sandbox import Sandbox, Limits, StdioTest, CallTest, AssertTest
    with Sandbox(backend="docker", workers=4) as sb:
        result = sb.run(program, tests=[StdioTest("1 2\\n", "3\\n")])
        raw = sb.execute(program, stdin="")

Backends: warm pools of locked-down Docker containers (`docker`), bubblewrap jails
(`namespace`) for hosts without Docker, and `local` (unsafe, explicit opt-in). In each
worker the stdlib-only executor (`sandbox/jail/`) forks one child per job. Programs never
see expected outputs and never produce a verdict: `sandbox.judge` compares outside. Imports
the standard library only. Image: `sandbox/image/` (`python -m sandbox.image build`).
"""

from sandbox.cases import AssertTest, CallTest, StdioTest
from sandbox.limits import Limits
from sandbox.pool import Sandbox
from sandbox.results import Execution, RunResult, Status, TestResult

__all__ = [
    "AssertTest",
    "CallTest",
    "Execution",
    "Limits",
    "RunResult",
    "Sandbox",
    "Status",
    "StdioTest",
    "TestResult",
]
