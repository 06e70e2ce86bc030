"""The embedded default task: arithmetic word problems from a seeded generator.

Small enough for a 135M model on a CPU to learn in minutes, and checked by the real math
verifier in MATH mode: the answer must be stated ("The answer is N", a box, an answer label,
a closing "... is N."), never a last number picked out of text (which would reward rambling
that happens to end on the right number). Each problem
chains one to three additions or subtractions (its `level`) of small numbers, and carries a
templated step-by-step "human" solution ending in "The answer is N." for the SFT baseline.

    problems("train")       # 2,000 problems; "validation" 200, "test" 400
    works_the_steps(problem, completion)   # did a pass do the question's arithmetic?
The splits come from different seeds, and a question that appears in an earlier split
(test, then validation) is never repeated in a later one, so no test problem is trained on.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from functools import cache
from itertools import islice

from evals.problem import Problem

SIZES = {"test": 400, "validation": 200, "train": 2000}
MAX_SHOTS = 8  # a bound, so that a typo (estep_shots=30) fails at start
SEEDS = {"test": 101, "validation": 202, "train": 303}
NAMES = ("Ana", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jon",
         "Kemal", "Lena", "Marta", "Nils", "Omar", "Priya")
ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "shells",
         "coins", "cards")

EQUATION = re.compile(r"\d+ [+-] \d+ = \d+")
Step = tuple[str, str, int]  # question sentence, solution sentence, new total


def _add(rng: random.Random, name: str, item: str, total: int) -> Step:
    n = rng.randint(1, 9)
    verb = rng.choice(("buys", "finds", "is given"))
    return (f"Then {name} {verb} {n} more.",
            f"{name} {verb} {n} more, so {name} has {total} + {n} = {total + n} {item}.",
            total + n)


def _sub(rng: random.Random, name: str, item: str, total: int) -> Step:
    n = rng.randint(1, max(1, total - 1))
    verb = rng.choice(("gives away", "loses", "uses"))
    return (f"Then {name} {verb} {n} of them.",
            f"{name} {verb} {n}, so {name} has {total} - {n} = {total - n} {item}.",
            total - n)


STEPS: tuple[Callable[[random.Random, str, str, int], Step], ...] = (_add, _sub)


def make_problem(rng: random.Random, split: str, index: int) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    level = rng.randint(1, 3)
    total = rng.randint(2, 12)
    question = [f"{name} has {total} {item}."]
    solution = [f"{name} starts with {total} {item}."]
    for _ in range(level):
        sentence, worked, total = rng.choice(STEPS)(rng, name, item, total)
        question.append(sentence)
        solution.append(worked)
    question.append(f"How many {item} does {name} have now?")
    solution.append(f"The answer is {total}.")
    return Problem(task_id=f"arith/{split}/{index}", question=" ".join(question), kind="math",
                   gold=str(total), mode="math", meta={"level": level},
                   solutions=(" ".join(solution),))


@cache
def _all() -> dict[str, list[Problem]]:
    seen: set[str] = set()
    out = {}
    for split in ("test", "validation", "train"):  # held-out splits claim questions first
        rng = random.Random(SEEDS[split])
        problems: list[Problem] = []
        while len(problems) < SIZES[split]:
            problem = make_problem(rng, split, len(problems))
            if problem.question not in seen:
                seen.add(problem.question)
                problems.append(problem)
        out[split] = problems
    return out


def problems(split: str) -> list[Problem]:
    if split not in SIZES:
        raise ValueError(f"arith has splits {sorted(SIZES)}, not {split!r}")
    return list(_all()[split])


def exemplars(count: int, like: Problem) -> list[Problem]:
    """Worked train problems for a few-shot prompt: the first `count` with as many steps as
    `like` (never `like` itself).

    A small model copies the shape of its examples. SmolLM2-135M, 8 samples for each of the
    demo's 64 train problems, solved this many problems of levels 1, 2 and 3:
      one exemplar of each level     15, 7, 7   (it often stopped after the first step)
      three three-step exemplars     11, 8, 12  (it invented steps on one-step problems, and
                                                 passed when they happened to cancel out)
      exemplars like the question    15, 8, 10"""
    if not 0 <= count <= MAX_SHOTS:
        raise ValueError(f"arith takes 0 to {MAX_SHOTS} exemplars, not {count}")
    level = like.meta["level"]
    same = (p for p in _all()["train"] if p.meta["level"] == level and p.question != like.question)
    return list(islice(same, count))


def works_the_steps(problem: Problem, completion: str) -> bool:
    """Whether `completion` does the problem's arithmetic, in the question's order: its
    "a + b = c" / "a - b = c" equations are exactly those of the templated solution.

    The verifier only checks the final answer, so a completion can pass with steps skipped,
    reordered or wrong that happen to land on the gold number. This is the audit for that
    (`scripts/audit_arith_run.py`), not a reward: ReST-EM's reward stays the final answer."""
    return EQUATION.findall(completion) == EQUATION.findall(problem.solutions[0])
