"""The three kinds of tests a run can hold, validated when they are made.

- `StdioTest`: APPS standard-input problems. The unmodified program runs as `__main__` with
  `stdin` on a real pipe; its stdout is compared with `expected` on the trusted side.
- `CallTest`: APPS call-based problems. `fn_name` is a top-level function or a method of
  `class Solution`; `args` and `expected` are JSON-like values (lists, dicts, numbers...).
- `AssertTest`: HumanEval. `test_code` defines `check(candidate)`; `entry_point` names the
  function under test. `prompt` is the dataset's prompt: trusted code whose helpers (such as
  `encode_cyclic` in HumanEval/38) the test code may call. Only the candidate's calls run in
  the sandbox; the assertions run here (see `sandbox.asserts`).
"""

from __future__ import annotations

import ast
import builtins
import symtable
from dataclasses import dataclass
from typing import Any

from sandbox.jail import values


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
        if not self.entry_point.isidentifier():
            raise ValueError(f"AssertTest.entry_point must be an identifier: {self.entry_point!r}")
        for what, text in (("test_code", self.test_code), ("prompt", self.prompt)):
            try:
                ast.parse(text)
            except SyntaxError as exc:
                raise ValueError(f"AssertTest.{what} is not valid Python: {exc}") from None
        missing = free_globals(self.test_code) - top_level_names(self.prompt) - {self.entry_point}
        if "check" not in top_level_names(self.test_code):
            raise ValueError("AssertTest.test_code must define check(candidate)")
        if missing:
            raise ValueError(
                f"AssertTest.test_code uses {sorted(missing)} which neither it nor the prompt "
                "defines; pass the dataset prompt as AssertTest(prompt=...)"
            )


def top_level_names(code: str) -> set[str]:
    """Names bound at module level (defs, classes, imports, assignments)."""
    table = symtable.symtable(code, "<test>", "exec")
    return {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}


def free_globals(code: str) -> set[str]:
    """Global names the code reads that it never binds and builtins do not provide."""
    used: set[str] = set()

    def walk(table: symtable.SymbolTable, module: bool) -> None:
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (module or symbol.is_global()):
                used.add(symbol.get_name())
        for child in table.get_children():
            walk(child, False)

    walk(symtable.symtable(code, "<test>", "exec"), True)
    return used - top_level_names(code) - set(dir(builtins))
