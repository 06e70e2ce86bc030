"""A request's test code (HumanEval's `check(candidate)`), run inside a jail of its own.

Test code is as untrusted as the program it tests: in a shared service both come from the
caller. So it runs here, in a forked child of the executor with the same hardening as any
job (seccomp, rlimits, no network, read-only root, no host identity, scratch wiped after),
and never in the candidate's process: the candidate runs in another job and only its
results, as typed JSON (`values`), come in. Neither side can reach the other's memory.

One job answers one round. The job carries the test, the results known so far (`known`)
and whether to judge them (`judge`: false in the first round, which checks the test and
records its calls). `answer` returns one JSON object:

- `{"invalid": why}`: the test cannot be used (not Python, no `check`, names it never
  defines, a call this split cannot replay).
- `{"calls": [args, ...]}`: run the candidate on these argument lists (each the encoded
  JSON text of a positional argument list) and come back with the results. Found by
  running `check` with asserts made non-fatal and a stand-in for the candidate that
  returns the results known so far, or a placeholder that absorbs any operation.
  In the first round it may carry `"expect": [{"eq": value} | {"truthy": bool}, ...]`, one
  per call: `check` is then nothing but `assert candidate(<literals>) == <literal>` (or a
  bare or negated call; a literal may be arithmetic on literals, such as `3 * 19`), so its
  verdict is each result compared with a literal, in order, which the trusted side does on
  the typed values without another round here (152 of HumanEval's 164 tests). Read from
  the syntax tree before any of the test's code runs, and kept only when recording ran
  check() to its end and made exactly the calls it names. A failure message is not
  evaluated then: the first failed expectation is the verdict, with our own detail.
- `{"state": "pass" | "fail" | "error" | "missing", "detail": text}`: `check` run for real
  against the known results; "error": the candidate raised, "missing": its job ended first.
- `{"broken": why}`: the test code itself failed (it exited, or raised before it called the
  candidate).

Calls are matched to results by argument list, in order. A call whose arguments were not
seen yet (they depend on earlier results) makes the round record again. Every pass starts
from `random.seed(0)`, so unseeded tests such as HumanEval/38's replay the same arguments.
A candidate that mutates its arguments in place is not visible to the test code.
"""

from __future__ import annotations

import ast
import builtins
import json
import operator
import random
import symtable
from collections import deque

import values


class CandidateError(Exception):
    """The candidate raised, or returned something that cannot be judged."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Unsupported(ValueError):
    """The test code makes a call this split cannot replay (a bad request, not a verdict)."""


class Broken(Exception):
    """The test code failed on its own account."""


class NeedMoreCalls(BaseException):
    """A call with arguments not run yet; a BaseException so that the test code's own
    `except Exception` cannot swallow it."""


class Placeholder:
    """Stands for an unknown result while recording: every operation gives another one."""

    def _same(self, *args, **kwargs):
        return self

    __call__ = __getattr__ = __getitem__ = _same
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _same
    __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = __round__ = _same
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _same  # type: ignore[assignment]
    __and__ = __or__ = __xor__ = __rand__ = __ror__ = _same

    def __bool__(self) -> bool:
        return True

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __float__(self) -> float:
        return 0.0

    def __int__(self) -> int:
        return 0

    __index__ = __int__

    def __str__(self) -> str:
        return ""


class SoftAsserts(ast.NodeTransformer):
    """`assert test, msg` becomes `try: test / except: pass` and the same for msg, so that
    recording sees every call, including those a failure message would make."""

    def visit_Assert(self, node: ast.Assert) -> list[ast.Try]:
        soft = []
        for expr in (node.test, node.msg):
            if expr is None:
                continue
            handler = ast.ExceptHandler(ast.Name("Exception", ast.Load()), None, [ast.Pass()])
            block = ast.Try(body=[ast.Expr(expr)], handlers=[handler], orelse=[], finalbody=[])
            for new in (block, block.body[0], handler, handler.type, handler.body[0]):
                ast.copy_location(new, node)
            soft.append(block)
        return soft


# ---------------------------------------------------------------- validation


def problem(test: dict) -> str:
    """What makes the test unusable, or ""."""
    tables = {}
    for what in ("test_code", "prompt"):
        try:
            tables[what] = symtable.symtable(test[what], f"<{what}>", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
            return f"AssertTest.{what} is not valid Python: {type(exc).__name__}: {exc}"
    bound = top_level_names(tables["test_code"])
    if "check" not in bound:
        return "AssertTest.test_code must define check(candidate)"
    missing = free_globals(tables["test_code"]) - bound - top_level_names(tables["prompt"])
    missing -= {test["entry_point"]}
    if missing:
        return (
            f"AssertTest.test_code uses {sorted(missing)} which neither it nor the prompt "
            "defines; pass the dataset prompt as AssertTest(prompt=...)"
        )
    return ""


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


# ---------------------------------------------------------------- expectations


ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
              ast.Pow: operator.pow}
MAX_FOLDED = 10_000  # bits of an int, items of a sequence: beyond, the test runs as written


def constant(node: ast.expr) -> object:
    """The value of a literal, or of arithmetic on literals (`3 * 19`, `2.0 / 3.0`,
    `(3 + 5, 3 * 5)`), as Python computes it; ValueError for anything else (names, calls,
    a result too large to fold here)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        items = [constant(item) for item in node.elts]
        return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {constant(k): constant(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = constant(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        left, right = constant(node.left), constant(node.right)
        if _too_large(node.op, left, right):
            raise ValueError("too large to fold")
        try:
            return ARITHMETIC[type(node.op)](left, right)
        except (ArithmeticError, TypeError) as exc:
            raise ValueError(str(exc)) from None
    raise ValueError(f"not a constant: {type(node).__name__}")


def _too_large(op: ast.operator, left: object, right: object) -> bool:
    """Whether `left op right` would grow past MAX_FOLDED (only *, ** and % formatting can
    grow fast)."""
    if isinstance(op, ast.Mult):
        for items, times in ((left, right), (right, left)):
            if isinstance(items, str | bytes | tuple | list) and isinstance(times, int):
                return len(items) * times > MAX_FOLDED
        both_ints = isinstance(left, int) and isinstance(right, int)
        return both_ints and left.bit_length() + right.bit_length() > MAX_FOLDED
    if isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
        return right > 0 and left.bit_length() * right > MAX_FOLDED
    # `"%0999999d" % 0` formats a megabyte from a few characters: formatting is not folded.
    return isinstance(op, ast.Mod) and isinstance(left, str | bytes)


def rebinds_check(source: str, tree: ast.Module) -> bool:
    """Whether the test code has a global or nonlocal statement, or binds the name check
    other than by its def. An ASCII source that says "check" once (its def) and neither
    keyword has none, which spares walking the whole tree (a non-ASCII one may spell an
    identifier in letters that normalise to ASCII: it is walked)."""
    if source.isascii() and source.count("check") == 1 and "global" not in source and (
            "nonlocal" not in source):
        return False
    return any(isinstance(n, ast.Global | ast.Nonlocal)
               or (isinstance(n, ast.Name) and n.id == "check" and not isinstance(n.ctx, ast.Load))
               for n in ast.walk(tree))


def expectations(source: str, tree: ast.Module) -> list[tuple[str, dict]] | None:
    """(encoded arguments, expectation) per assert when check() (in the test code `source`,
    parsed as `tree`) is only literal asserts on the candidate's results (see the module
    docstring); None otherwise."""
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or rebinds_check(source, tree):
        return None
    check = checks[0]
    a = check.args
    if (check.decorator_list or len(a.args) != 1 or a.posonlyargs or a.vararg or a.kwonlyargs
            or a.kwarg or a.defaults):
        return None
    name = a.args[0].arg
    plan = []
    for statement in check.body:
        if isinstance(statement, ast.Pass) or (isinstance(statement, ast.Expr)
                                               and isinstance(statement.value, ast.Constant)):
            continue
        if not isinstance(statement, ast.Assert):
            return None
        condition = statement.test
        if isinstance(condition, ast.Constant) and condition.value is True:
            continue
        if (isinstance(condition, ast.Compare) and len(condition.ops) == 1
                and isinstance(condition.ops[0], ast.Eq)):
            call, want = condition.left, condition.comparators[0]
            try:
                expect = {"eq": values.encode(constant(want))}
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
        elif isinstance(condition, ast.UnaryOp) and isinstance(condition.op, ast.Not):
            call, expect = condition.operand, {"truthy": False}
        else:
            call, expect = condition, {"truthy": True}
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == name and not call.keywords):
            return None
        try:
            args = [constant(arg) for arg in call.args]
            plan.append((args_key(tuple(args), {}), expect))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None  # Unsupported is a ValueError: recording will say so
    return plan


# ---------------------------------------------------------------- the passes


def run_check(test: dict, code: str | ast.Module, candidate) -> None:
    """The prompt, then the test code (as given, or its soft-assert tree), then
    check(candidate), from a fixed random seed."""
    namespace: dict = {"__name__": "__restem_tests__"}
    random.seed(0)
    if test["prompt"]:
        exec(compile(test["prompt"], "<prompt>", "exec"), namespace)
    exec(compile(code, "<test code>", "exec"), namespace)
    check = namespace["check"]  # before the entry point is bound: it may be named check too
    namespace[test["entry_point"]] = candidate
    check(candidate)


def soft_asserts(tree: ast.Module) -> ast.Module:
    """The test code's tree with every assert made non-fatal (changes `tree` in place)."""
    return SoftAsserts().visit(tree)


def args_key(args: tuple, kwargs: dict) -> str:
    if kwargs:
        raise Unsupported("candidate calls with keyword arguments are not supported")
    try:
        return json.dumps(values.encode(list(args)), separators=(",", ":"))
    except values.EncodeError as exc:
        raise Unsupported(f"the test code passes an argument the sandbox cannot take: "
                          f"{exc}") from None


def by_arguments(known: list) -> dict[str, deque]:
    """Known outcomes queued per argument list: calls are matched by their arguments, in order."""
    queues: dict[str, deque] = {}
    for key, outcome in known:
        queues.setdefault(key, deque()).append(outcome)
    return queues


def record(test: dict, soft: ast.Module, known: list) -> tuple[list[str], bool]:
    """The argument lists of every call check() makes (`soft`: the test code's tree from
    `soft_asserts`), given the results known, and whether check() ran to its end (no
    placeholder or error stopped it)."""
    calls: list[str] = []
    queues = by_arguments(known)

    def candidate(*args, **kwargs):
        key = args_key(args, kwargs)
        calls.append(key)
        queue = queues.get(key)
        outcome = queue.popleft() if queue else None
        if outcome is not None and outcome["kind"] == "ok":
            return values.decode(outcome["value"])
        return Placeholder()

    try:
        run_check(test, soft, candidate)
    except Unsupported:
        raise
    except Exception:  # a placeholder broke the test code: we have the calls up to here
        return calls, False
    return calls, True


def judge(test: dict, known: list) -> tuple[str, str]:
    """check() against the known results: (state, detail), state "more" when it made a call
    whose result is not known."""
    count = [0]
    queues = by_arguments(known)

    def candidate(*args, **kwargs):
        key = args_key(args, kwargs)
        count[0] += 1
        queue = queues.get(key)
        if not queue:
            raise NeedMoreCalls
        outcome = queue.popleft()
        if outcome["kind"] != "ok":
            raise CandidateError(outcome["kind"], outcome.get("message", ""))
        return values.decode(outcome["value"])  # a fresh copy per call

    try:
        run_check(test, test["test_code"], candidate)
    except NeedMoreCalls:
        return "more", ""
    except CandidateError as exc:
        return {"unencodable": "fail", "raise": "error", "missing": "missing"}[exc.kind], str(exc)
    except AssertionError as exc:
        return "fail", f"assertion failed at call {count[0]}{': ' + str(exc) if str(exc) else ''}"
    except Unsupported:
        raise
    except Exception as exc:
        if not count[0]:  # it never reached the candidate: the test is at fault
            raise Broken(f"the test code raised {type(exc).__name__} before it called the "
                         f"candidate: {str(exc)[:200]}") from None
        return "fail", f"test code raised {type(exc).__name__}: {str(exc)[:200]}"
    return "pass", ""


def first_round(test: dict, known: list) -> dict:
    """The calls check() makes, with the literal expectations when there are any."""
    tree = ast.parse(test["test_code"])  # valid: problem() compiled it
    plan = expectations(test["test_code"], tree)  # before the test's code can change anything
    if plan is None:
        return {"calls": record(test, soft_asserts(tree), known)[0]}
    keys = [key for key, _ in plan]
    # As written first: placeholders meet `candidate(...) == literal`, so no failure message
    # runs (one that calls the candidate would add calls); then with soft asserts, which
    # also see past `assert not candidate(...)`.
    calls, completed = record(test, test["test_code"], known)
    if not (completed and calls == keys):
        calls, completed = record(test, soft_asserts(tree), known)
    if completed and calls == keys:
        return {"calls": calls, "expect": [expect for _, expect in plan]}
    return {"calls": calls}


def answer(job: dict) -> dict:
    """One round for the executor's child (see the module docstring)."""
    test, known = job["test"], [(key, outcome) for key, outcome in job["known"]]
    try:
        if not job["judge"]:
            why = problem(test)
            if why:
                return {"invalid": why}
            return first_round(test, known)
        state, detail = judge(test, known)
        if state != "more":
            return {"state": state, "detail": detail}
        return {"calls": record(test, soft_asserts(ast.parse(test["test_code"])), known)[0]}
    except Unsupported as exc:
        return {"invalid": str(exc)}
    except Broken as exc:
        return {"broken": str(exc)}
    except MemoryError:
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt... from the test code
        return {"broken": f"the test code raised {type(exc).__name__}: {str(exc)[:200]}"}
