"""Prompts in the conventions users know, rendered deterministically.

- MATH: Minerva-style 4-shot ("Problem:" / "Solution:" ending "Final Answer: The final answer
  is $X$. I hope it is correct."). The four exemplars are drawn from the MATH *train* split
  with a fixed seed among short level 1-3 solutions, so no test problem can appear.
- GSM8K: 8-shot chain of thought ("Q:" / "A: ... The answer is N."), exemplars from the GSM8K
  *train* split with a fixed seed, calculator annotations (<<...>>) removed.
- BBH: the task's own 3-shot CoT prompt file, then "Q: <input>\\nA: Let's think step by step."
- HumanEval: zero-shot; the prompt is the function signature and docstring, as given.
- APPS: the APPS paper's format: QUESTION, the starter code, "Use Standard Input format" or
  "Use Call-Based format", then ANSWER.
- MBPP: the MBPP paper's 3-shot format ("You are an expert Python programmer, and here is your
  task: ... Your code should pass these tests:", the asserts, the code between [BEGIN] and
  [DONE]), exemplars task_ids 2, 3 and 4 of the dataset's prompt split; chat: the same task
  text as one message asking for the code in a Python block.
- arith (the embedded task): zero-shot, the question and an instruction to end with "The
  answer is" and the number; with `shots`, worked train problems come first.

`stop_sequences` gives where a completion ends (the next few-shot item). `chat=True` wraps
the text as one user message for models with a chat template.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path

from evals.problem import Problem
from evals.tasks import load, shown_asserts

SEED = 1234
FEW_SHOT_TASKS = ("math", "gsm8k", "mbpp", "arith")  # tasks whose exemplar count `shots` sets
MBPP_EXEMPLARS = ("mbpp/2", "mbpp/3", "mbpp/4")  # the MBPP paper's (its prompt split)
ARITH_INSTRUCTION = 'Solve it step by step. Then write "The answer is" and the number.'
_CALCULATOR = re.compile(r"<<[^>]*>>")


def render(problem: Problem, data_dir: Path | str | None = None, *, shots: int | None = None,
           chat: bool = False) -> str | list[dict[str, str]]:
    """The prompt for `problem` (its task is read from the task_id or kind)."""
    task = _task_of(problem)
    if task == "math":
        text = _math_prompt(str(data_dir), 4 if shots is None else shots) + (
            f"Problem:\n{problem.question}\n\nSolution:\n")
    elif task == "gsm8k":
        text = _gsm8k_prompt(str(data_dir), 8 if shots is None else shots) + (
            f"Q: {problem.question}\nA:")
    elif task == "bbh":
        text = _bbh_prompt(str(data_dir), problem.meta["task"]) + (
            f"\n\nQ: {problem.question}\nA: Let's think step by step.")
    elif task == "humaneval":
        text = problem.question
    elif task == "arith":
        return _arith_prompt(problem, shots or 0, chat)
    elif task == "mbpp":
        if chat:
            text = (f"{mbpp_task(problem)}\nWrite the function in one Python code block, "
                    "with nothing else.")
        else:
            text = _mbpp_prompt(str(data_dir), problem.meta["variant"],
                                3 if shots is None else shots) + f"{mbpp_task(problem)}\n[BEGIN]\n"
    else:
        text = apps_prompt(problem)
    return [{"role": "user", "content": text}] if chat else text


def _arith_prompt(problem: Problem, shots: int, chat: bool) -> str | list[dict[str, str]]:
    """Zero-shot by default; with shots, worked train problems come first (as earlier chat
    turns when `chat`), which is how the ReST-EM loop samples a model that does not yet
    follow the answer format on its own."""
    from evals.arithmetic import exemplars

    turns = [(p.question, p.solutions[0]) for p in exemplars(shots, like=problem)]
    turns.append((problem.question, None))
    if chat:
        messages = []
        for question, solution in turns:
            messages.append({"role": "user", "content": f"{question}\n{ARITH_INSTRUCTION}"})
            if solution is not None:
                messages.append({"role": "assistant", "content": solution})
        return messages
    return "".join(f"{question}\n{ARITH_INSTRUCTION}\n" + (f"{solution}\n\n" if solution else "")
                   for question, solution in turns)


# Where a completion ends: the next few-shot item, or (HumanEval) the next top-level
# statement, as in the Codex paper. A chat-formatted prompt ends at the model's own end.
STOPS = {
    "math": ("\n\nProblem:", "\nProblem:"),
    "gsm8k": ("\n\nQ:", "\nQ:"),
    "bbh": ("\n\nQ:", "\nQ:"),
    "humaneval": ("\nclass ", "\ndef ", "\n#", "\nif __name__", "\nprint("),
    "apps": ("\nQUESTION:",),
    "mbpp": ("[DONE]",),
    "arith": ("\n\n",),
}


def stop_sequences(problem: Problem, chat: bool = False) -> tuple[str, ...]:
    return () if chat else STOPS[_task_of(problem)]


def _task_of(problem: Problem) -> str:
    if problem.task_id.startswith("HumanEval/"):
        return "humaneval"
    for prefix in ("gsm8k", "bbh", "apps", "mbpp", "arith"):
        if problem.task_id.startswith(prefix + "/"):
            return prefix
    if problem.kind == "math":
        return "math"
    raise ValueError(f"cannot tell the task of {problem.task_id!r}")


def _pick(problems: list[Problem], count: int) -> list[Problem]:
    return random.Random(SEED).sample(problems, count) if count else []


@lru_cache(maxsize=8)
def _math_prompt(data_dir: str, shots: int) -> str:
    train = load("math", "train", data_dir if data_dir != "None" else None)
    short = [p for p in train if p.meta["level"] in (1, 2, 3) and p.gold
             and len(p.solutions[0]) < 400 and "[asy]" not in p.solutions[0] + p.question]
    parts = []
    for p in _pick(short, shots):
        parts.append(f"Problem:\n{p.question}\n\nSolution:\n{p.solutions[0]}\n"
                     f"Final Answer: The final answer is ${p.gold}$. I hope it is correct.\n\n")
    return "".join(parts)


@lru_cache(maxsize=8)
def _gsm8k_prompt(data_dir: str, shots: int) -> str:
    train = load("gsm8k", "train", data_dir if data_dir != "None" else None)
    parts = []
    for p in _pick(train, shots):
        reasoning = _CALCULATOR.sub("", p.solutions[0].rsplit("####", 1)[0]).strip()
        reasoning = " ".join(line.strip() for line in reasoning.splitlines())
        parts.append(f"Q: {p.question}\nA: {reasoning} The answer is {p.gold}.\n\n")
    return "".join(parts)


@lru_cache(maxsize=32)
def _bbh_prompt(data_dir: str, task: str) -> str:
    path = Path(data_dir) / "bbh" / "cot-prompts" / f"{task}.txt"
    text = path.read_text()
    # The files start with a canary/description header, then "-----"; keep from there.
    return text.split("-----\n", 1)[-1].strip()


def apps_prompt(problem: Problem) -> str:
    starter = problem.meta.get("starter_code") or ""
    how = "Use Call-Based format" if "call" in problem.tests else "Use Standard Input format"
    return f"\nQUESTION:\n{problem.question}\n{starter}\n{how}\nANSWER:\n"


def mbpp_task(problem: Problem) -> str:
    """An MBPP problem as the MBPP paper words it: the task and the asserts to pass (those
    it shows; see evals.tasks.show_tests)."""
    tests = "\n".join(shown_asserts(problem))
    return (f"You are an expert Python programmer, and here is your task: {problem.question} "
            f"Your code should pass these tests:\n\n{tests}")


@lru_cache(maxsize=8)
def _mbpp_prompt(data_dir: str, variant: str, shots: int) -> str:
    exemplars = {p.task_id: p for p in load(variant, "prompt",
                                            data_dir if data_dir != "None" else None)}
    chosen = [exemplars[t] for t in MBPP_EXEMPLARS if t in exemplars][:shots]
    if len(chosen) < shots:
        raise ValueError(f"MBPP prompts take at most {len(chosen)} shots (the paper's "
                         f"exemplars {', '.join(MBPP_EXEMPLARS)} found in {variant}'s prompt "
                         f"split), not {shots}")
    return "".join(f"{mbpp_task(p)}\n[BEGIN]\n{p.solutions[0].strip()}\n[DONE]\n"
                   for p in chosen)
