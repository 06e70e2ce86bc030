"""Few-shot prompts: deterministic to the byte (also across processes), free of test-split
problems, and in the expected shape for every task."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from evals.prompts import render
from evals.tasks import load


def digest(data_dir) -> str:
    parts = []
    for name, split in (("math", "test"), ("gsm8k", "test"), ("bbh", "test"), ("apps", "train")):
        parts.append(render(load(name, split, data_dir)[0], data_dir))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def test_prompts_render_byte_identically_across_processes(data_dir) -> None:
    here = digest(data_dir)
    code = (f"from tests.test_prompts import digest; print(digest({str(data_dir)!r}))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert here == there == digest(data_dir)


@pytest.mark.parametrize(("task", "shots"), [("math", 4), ("gsm8k", 8)])
def test_few_shot_exemplars_come_from_train_only(data_dir, task: str, shots: int) -> None:
    test_problems = load(task, "test", data_dir)
    prompt = render(test_problems[0], data_dir)
    exemplars = prompt.split("\n\nProblem:\n" if task == "math" else "\n\nQ: ")
    assert len(exemplars) == shots + 1
    few_shot = prompt[: prompt.rfind(test_problems[0].question)]
    leaked = [p.task_id for p in test_problems if p.question.strip() in few_shot]
    assert not leaked
    if task == "math":
        assert not any(p.question.strip() in few_shot for p in load("math", "math500", data_dir))
        assert few_shot.count("I hope it is correct.") == shots
    else:
        assert few_shot.count("The answer is") == shots and "<<" not in few_shot


def test_bbh_uses_the_tasks_own_three_shots(data_dir) -> None:
    for task in ("navigate", "date_understanding", "dyck_languages"):
        problem = load(f"bbh/{task}", data_dir=data_dir)[0]
        prompt = render(problem, data_dir)
        assert prompt.count("\nQ: ") + prompt.startswith("Q: ") >= 3
        assert "canary" not in prompt
        assert prompt.endswith(f"Q: {problem.question}\nA: Let's think step by step.")


def test_humaneval_apps_and_chat(data_dir) -> None:
    he = load("humaneval")[0]
    assert render(he) == he.question
    apps = {p.task_id: p for p in load("apps", "train", data_dir)}
    assert "Use Standard Input format" in render(apps["apps/1"], data_dir)
    assert "Use Call-Based format" in render(apps["apps/4184"], data_dir)
    chat = render(he, chat=True)
    assert chat == [{"role": "user", "content": he.question}]
    assert render(load("math", "test", data_dir)[0], data_dir, shots=0).startswith("Problem:")
