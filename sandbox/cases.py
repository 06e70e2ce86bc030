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

import builtins
import functools
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
        problem = _assert_test_problem(self.test_code, self.entry_point, self.prompt)
        if problem:
            raise ValueError(problem)


@functools.lru_cache(maxsize=4096)
def _assert_test_problem(test_code: str, entry_point: str, prompt: str) -> str:
    """What is wrong with an AssertTest, or "" (cached: datasets repeat the same tests)."""
    if not entry_point.isidentifier():
        return f"AssertTest.entry_point must be an identifier: {entry_point!r}"
    tables = {}
    for what, text in (("test_code", test_code), ("prompt", prompt)):
        try:
            tables[what] = symtable.symtable(text, f"<{what}>", "exec")
        except SyntaxError as exc:
            return f"AssertTest.{what} is not valid Python: {exc}"
    bound = top_level_names(tables["test_code"])
    if "check" not in bound:
        return "AssertTest.test_code must define check(candidate)"
    missing = free_globals(tables["test_code"]) - bound - top_level_names(tables["prompt"])
    missing -= {entry_point}
    if missing:
        return (
            f"AssertTest.test_code uses {sorted(missing)} which neither it nor the prompt "
            "defines; pass the dataset prompt as AssertTest(prompt=...)"
        )
    return ""


def clear_validation_cache() -> None:
    _assert_test_problem.cache_clear()


def top_level_names(module: symtable.SymbolTable) -> set[str]:
    """Names bound at module level (defs, classes, imports, assignments)."""
    return {s.get_name() for s in module.get_symbols() if s.is_assigned() or s.is_imported()}


def free_globals(module: symtable.SymbolTable) -> set[str]:
    """Global names the code reads that builtins do not provide (bound or not)."""
    used: set[str] = set()

    def walk(table: symtable.SymbolTable, top: bool) -> None:
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (top or symbol.is_global()):
                used.add(symbol.get_name())
        for child in table.get_children():
            walk(child, False)

    walk(module, True)
    return used - set(dir(builtins))
