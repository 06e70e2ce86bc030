"""The embedded arithmetic task: seeded, held-out splits disjoint from train, and every
templated solution accepted by the real math verifier (a wrong final answer is not)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from evals.arithmetic import EQUATION, MAX_SHOTS, SIZES, problems, works_the_steps
from evals.checks import MathCheck
from evals.problem import Problem
from evals.prompts import render
from evals.tasks import load
from restem_client.local_verifier import LocalVerifier

REPO = Path(__file__).resolve().parent.parent


def test_splits_are_seeded_sized_and_disjoint() -> None:
    splits = {s: load("arith", s) for s in SIZES}
    assert {s: len(p) for s, p in splits.items()} == SIZES
    assert splits["test"] == problems("test")  # the same problems every time
    questions = {s: {p.question for p in ps} for s, ps in splits.items()}
    assert not questions["train"] & (questions["test"] | questions["validation"])
    assert not questions["test"] & questions["validation"]
    assert {p.meta["level"] for p in splits["test"]} == {1, 2, 3}


def test_templated_solutions_pass_and_wrong_answers_fail() -> None:
    every = [p for s in SIZES for p in load("arith", s)]
    checks = [MathCheck(p.solutions[0], p.gold, p.mode) for p in every]
    wrong = [replace(c, completion=c.completion.rsplit(" ", 1)[0] + f" {int(p.gold) + 1}.")
             for c, p in zip(checks, every, strict=True)]
    with LocalVerifier(sandbox=None) as verifier:
        results = verifier.check_many(checks + wrong)
    verdicts = [r.verdict for r in results]
    assert verdicts[: len(every)] == ["PASS"] * len(every)
    assert verdicts[len(every):] == ["FAIL"] * len(every)


def test_prompt_asks_for_the_answer_phrase() -> None:
    problem = load("arith", "test")[0]
    chat = render(problem, chat=True)
    assert chat[0]["role"] == "user" and problem.question in chat[0]["content"]
    assert "The answer is" in chat[0]["content"]


def test_few_shot_prompt_shows_worked_train_problems_first() -> None:
    problem = load("arith", "test")[0]
    chat = render(problem, chat=True, shots=3)
    assert [m["role"] for m in chat] == ["user", "assistant"] * 3 + ["user"]
    train = {p.question: p for p in load("arith", "train")}
    for ask, answer in zip(chat[0:6:2], chat[1:6:2], strict=True):
        exemplar = train[ask["content"].split("\n")[0]]  # a train problem, never a test one
        assert answer["content"] == exemplar.solutions[0]
    # Exemplars take as many steps as the question, so the model copies the right shape.
    assert {train[m["content"].split("\n")[0]].meta["level"] for m in chat[0:6:2]} == \
        {problem.meta["level"]}
    assert chat[-1] == render(problem, chat=True)[0]
    text = render(problem, shots=2)
    assert text.endswith(render(problem)) and text.count("The answer is ") == 2  # the solutions


def test_a_train_problem_is_never_its_own_exemplar() -> None:
    for problem in load("arith", "train")[:50]:
        chat = render(problem, chat=True, shots=MAX_SHOTS)
        asked = [m["content"].split("\n")[0] for m in chat[0::2]]
        assert asked.count(problem.question) == 1 and asked[-1] == problem.question
    with pytest.raises(ValueError, match="arith takes 0 to 8 exemplars, not 9"):
        render(problem, chat=True, shots=MAX_SHOTS + 1)


def _two_step_problem_and_its_steps_swapped() -> tuple[Problem, str]:
    """A level-2 train problem, and its templated solution with the two equations swapped:
    the same final answer, reached out of the question's order."""
    problem = next(p for p in problems("train") if p.meta["level"] == 2)
    first, second = EQUATION.findall(problem.solutions[0])
    return problem, problem.solutions[0].replace(first, "@").replace(second, first).replace(
        "@", second)


def test_works_the_steps_needs_the_questions_equations_in_order() -> None:
    problem, swapped = _two_step_problem_and_its_steps_swapped()
    assert works_the_steps(problem, problem.solutions[0])
    assert not works_the_steps(problem, swapped)  # same answer, steps out of order
    assert not works_the_steps(problem, f"The answer is {problem.gold}.")  # no work shown


def test_audit_script_counts_lucky_passes_and_writes_the_worked_ones(tmp_path: Path) -> None:
    problem, lucky = _two_step_problem_and_its_steps_swapped()
    run = tmp_path / "run"
    (run / "iter_1" / "generate").mkdir(parents=True)
    (run / "config.toml").write_text('task = "arith"\n')
    rows = [{"task_id": problem.task_id, "completion": c, "verdict": "PASS"}
            for c in (problem.solutions[0], lucky)]
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    (run / "iter_1" / "generate" / "samples_results.jsonl").write_text(lines)
    (run / "iter_1" / "train.jsonl").write_text(lines)
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "audit_arith_run.py"), str(run),
                          "--write-worked", str(tmp_path / "worked")],
                         capture_output=True, text=True, check=True).stdout
    assert "iter_1 kept (worked/kept): L2 1/2" in out
    assert "problems solved 1, by working the steps 1" in out
    worked = (tmp_path / "worked" / "iter_1.jsonl").read_text().splitlines()
    assert [json.loads(line)["completion"] for line in worked] == [problem.solutions[0]]
