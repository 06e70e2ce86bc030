"""The three kinds of tests a run can hold, validated when they are made.

- `StdioTest`: APPS standard-input problems. The unmodified program runs as `__main__` with
  `stdin` on a real pipe; its stdout is compared with `expected` on the trusted side.
- `CallTest`: APPS call-based problems. `fn_name` is a top-level function or a method of
  `class Solution`; `args` and `expected` are JSON-like values (lists, dicts, numbers...).
- `AssertTest`: HumanEval. `test_code` defines `check(candidate)`; `entry_point` names the
  function under test. `prompt` is the dataset's prompt, whose helpers (such as
  `encode_cyclic` in HumanEval/38) the test code may call. Both are request content, as
  untrusted as the program: they are only sized here and run in a jail of their own, apart
  from the candidate (see `sandbox.asserts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.jail import values

MAX_TEST_CODE_CHARS = 1_000_000  # per field of an AssertTest; HumanEval's longest is ~4,000


@dataclass(frozen=True)
class StdioTest:
    stdin: str
    expected: str

    __test__ = False


@dataclass(frozen=True)
class CallTest:
    fn_name: str
    args: list | tuple
    expected: Any

    __test__ = False

    def __post_init__(self) -> None:
        if not self.fn_name.isidentifier():
            raise ValueError(f"CallTest.fn_name must be an identifier, got {self.fn_name!r}")
        if not isinstance(self.args, list | tuple):
            raise ValueError(f"CallTest.args must be a list of arguments, got {self.args!r}")
        for what, value in (("args", list(self.args)), ("expected", self.expected)):
            try:
                values.encode(value)
            except values.EncodeError as exc:
                raise ValueError(f"CallTest.{what} cannot be sent to the sandbox: {exc}") from None

    def wire_call(self) -> list:
        return [self.fn_name, values.encode(list(self.args))]


@dataclass(frozen=True)
class AssertTest:
    test_code: str
    entry_point: str
    prompt: str = ""

    __test__ = False

    def __post_init__(self) -> None:
        # Only what costs nothing to check: the code itself is parsed in its jail.
        for name in ("test_code", "entry_point", "prompt"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"AssertTest.{name} must be a string, got "
                                 f"{type(value).__name__}")
            if len(value) > MAX_TEST_CODE_CHARS:
                raise ValueError(f"AssertTest.{name} is longer than {MAX_TEST_CODE_CHARS:,} "
                                 "characters")
        if not self.entry_point.isidentifier():
            raise ValueError(f"AssertTest.entry_point must be an identifier: "
                             f"{self.entry_point[:100]!r}")
