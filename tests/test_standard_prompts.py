"""The standard prompt variants: the published exemplars (checked against facts outside our
code: their count, the answers the papers print, the test splits), the variants' names and
errors, the loop's prompts left as they were, and what `evaluate` records of the prompt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evals.evaluate import evaluate
from evals.exemplars import MINERVA_MATH, WEI_GSM8K
from evals.problem import Problem
from evals.prompts import LOOP, STANDARD, VARIANTS, render, stop_sequences, variant
from evals.sampling import Completion, SamplingParams
from evals.tasks import boxed_answer, load

FIXTURES = Path(__file__).parent / "data" / "lm_eval_contexts.json"

# The final answers of Wei et al. (2022), Table 20, in order (trees, cars, chocolates,
# lollipops, toys, computers, golf balls, bagels).
WEI_ANSWERS = ["6", "5", "39", "8", "9", "29", "33", "8"]
# Minerva's four (Lewkowycz et al., 2022, Appendix D.2): domain, determinant, weights, system.
MINERVA_ANSWERS = ["[2,5)", "24", "16", "-\\frac{2}{3}"]


def _words(text: str) -> str:
    return " ".join(text.split())


def test_wei_exemplars_are_the_papers_eight() -> None:
    assert len(WEI_GSM8K) == 8
    answers = [re.fullmatch(r".*The answer is (\d+)\.", a, re.DOTALL) for _, a in WEI_GSM8K]
    assert [m.group(1) if m else None for m in answers] == WEI_ANSWERS
    assert WEI_GSM8K[0][0].startswith("There are 15 trees in the grove.")
    assert WEI_GSM8K[-1][0].startswith("Olivia has $23.")


def test_minerva_exemplars_box_the_answer_they_state() -> None:
    assert len(MINERVA_MATH) == 4
    for (_, solution), answer in zip(MINERVA_MATH, MINERVA_ANSWERS, strict=True):
        assert boxed_answer(solution) == answer
        assert solution.endswith(f"Final Answer: The final answer is ${answer}$. "
                                 "I hope it is correct.")


def test_no_standard_exemplar_is_a_test_problem(data_dir: Path) -> None:
    gsm8k_test = {_words(p.question) for p in load("gsm8k", "test", data_dir)}
    assert not [q for q, _ in WEI_GSM8K if _words(q) in gsm8k_test]
    math_test = {_words(p.question) for split in ("test", "math500")
                 for p in load("math", split, data_dir)}
    assert len(math_test) > 4000  # MATH-500 is drawn from the 5,000 test problems
    assert not [q for q, _ in MINERVA_MATH if _words(q) in math_test]


def test_wei_8shot_is_the_harness_layout(data_dir: Path) -> None:
    problem = load("gsm8k", "test", data_dir)[0]
    prompt = render(problem, data_dir, prompt="wei-8shot")
    items = prompt.split("\n\n")
    assert len(items) == 9 and items[-1] == f"Q: {problem.question}\nA:"
    assert items[:8] == [f"Q: {q}\nA: {a}" for q, a in WEI_GSM8K]
    assert render(problem, data_dir, prompt="wei-8shot", shots=2).count("Q: ") == 3
    assert stop_sequences(problem, prompt="wei-8shot") == ("Q:", "</s>", "<|im_end|>")
    zero = render(problem, data_dir, prompt="zero-shot")
    assert zero == f"Q: {problem.question}\nA: Let's think step by step."


def test_minerva_4shot_is_the_harness_layout(data_dir: Path) -> None:
    problem = load("math", "math500", data_dir)[0]
    prompt = render(problem, data_dir, prompt="minerva-4shot")
    assert prompt.startswith("Problem:\nFind the domain of the expression  $\\frac")
    assert prompt.count("Problem:\n") == 5 and prompt.count("I hope it is correct.") == 4
    assert prompt.endswith(f"\n\nProblem:\n{problem.question}\n\nSolution:")
    assert stop_sequences(problem, prompt="minerva-4shot") == ("Problem:",)


def test_standard_prompts_match_the_harness_contexts(data_dir: Path) -> None:
    """Byte for byte, the context lm-evaluation-harness 0.4.13 sends the model for the same
    documents, and the strings where it stops generating: its gsm8k_cot, gsm8k_cot_zeroshot,
    gsm8k (five exemplars drawn per document: documents 0, 1 and 59), minerva_math500,
    humaneval, mbpp and four bbh_cot_fewshot configs on the local data files (the task configs
    of bench/lm_eval_compare.py), copied from its `--model dummy --log_samples` output."""
    recorded = json.loads(FIXTURES.read_text())
    bbh = ("navigate", "date_understanding", "object_counting", "word_sorting")
    problems = {p.task_id: p for name, split in (("gsm8k", "test"), ("math", "math500"),
                                                 ("humaneval", "test"), ("mbpp", "test"),
                                                 *((f"bbh/{task}", "test") for task in bbh))
                for p in load(name, split, data_dir)}
    assert {case["harness_task"] for case in recorded} == {
        "gsm8k_cot", "gsm8k_cot_zeroshot", "gsm8k", "minerva_math500", "humaneval", "mbpp",
        *(f"bbh_cot_fewshot_{task}" for task in bbh)}
    for case in recorded:
        problem = problems[case["task_id"]]
        rendered = render(problem, data_dir, prompt=case["variant"])
        assert rendered == case["context"], (case["harness_task"], case["task_id"])
        assert list(stop_sequences(problem, prompt=case["variant"])) == case["until"]


def test_the_loop_keeps_the_mbpp_prompt_it_was_made_with(data_dir: Path) -> None:
    """The harness's MBPP prompt is for evaluation; the loop's keeps normalized line ends and
    one newline between items, as every recorded MBPP run was sampled with."""
    problem = load("mbpp", "test", data_dir)[0]
    loop, harness = render(problem, data_dir), render(problem, data_dir, prompt="harness-3shot")
    assert "\r\n" not in loop and "\r\n" in harness
    assert loop.count("[DONE]\nYou are") == 3 and harness.count("[DONE]\n\nYou are") == 3
    assert loop == render(problem, data_dir, prompt="mbpp-3shot")


def test_the_bbh_variants_differ_by_the_harness_newline(data_dir: Path) -> None:
    """suzgun-3shot-cot ends where the BBH repository's code ends the prompt; the harness adds a
    newline and stops at any "Q" or a blank line."""
    problem = load("bbh/navigate", "test", data_dir)[0]
    suzgun = render(problem, data_dir, prompt="suzgun-3shot-cot")
    assert suzgun.endswith(f"\n\nQ: {problem.question}\nA: Let's think step by step.")
    assert render(problem, data_dir, prompt="harness-3shot-cot") == suzgun + "\n"
    assert stop_sequences(problem, prompt="suzgun-3shot-cot") == ("\n\nQ:", "\nQ:")
    assert stop_sequences(problem, prompt="harness-3shot-cot") == ("</s>", "Q", "\n\n")


def test_unknown_variants_name_the_valid_ones(data_dir: Path) -> None:
    problem = load("gsm8k", "test", data_dir)[0]
    with pytest.raises(ValueError, match="expected one of wei-8shot, zero-shot, "
                       "harness-5shot, lighteval-5shot, train-seeded"):
        render(problem, data_dir, prompt="wei-5shot")
    with pytest.raises(ValueError, match="expected one of suzgun-3shot-cot, harness-3shot-cot, "
                       "lighteval-3shot"):
        variant("bbh/navigate", "minerva-4shot")
    with pytest.raises(ValueError, match="shots must be 0 to 8, not 9"):
        render(problem, data_dir, prompt="wei-8shot", shots=9)
    with pytest.raises(ValueError, match="takes no exemplars"):
        render(problem, data_dir, prompt="zero-shot", shots=2)


def test_the_loop_keeps_the_train_seeded_prompts(data_dir: Path) -> None:
    """restem_client.restem renders without naming a variant: that is the train-seeded one
    for MATH and GSM8K (its exemplars are train problems, not Wei's or Minerva's), and
    mbpp-3shot for MBPP."""
    assert LOOP["gsm8k"] == LOOP["math"] == "train-seeded" and LOOP["mbpp"] == "mbpp-3shot"
    assert STANDARD == {"gsm8k": "wei-8shot", "math": "minerva-4shot",
                        "bbh": "suzgun-3shot-cot", "humaneval": "codex-zero-shot",
                        "apps": "apps", "mbpp": "harness-3shot", "arith": "arith"}
    train = {_words(p.question) for p in load("gsm8k", "train", data_dir)}
    problem = load("gsm8k", "test", data_dir)[0]
    loop_prompt = render(problem, data_dir)
    assert loop_prompt == render(problem, data_dir, prompt="train-seeded")
    shown = [_words(item.split("\nA:")[0].removeprefix("Q: "))
             for item in loop_prompt.split("\n\n")[:-1]]
    assert len(shown) == 8 and all(q in train for q in shown)
    assert WEI_GSM8K[0][0] not in loop_prompt
    assert stop_sequences(problem) == ("\n\nQ:", "\nQ:")
    for task, names in VARIANTS.items():
        assert variant(task).name == LOOP[task] in {v.name for v in names}


class _Echo:
    """A sampler that answers every prompt with the gold answer, and keeps what it saw."""

    def __init__(self, problems: list[Problem]) -> None:
        self.golds = [p.gold for p in problems]
        self.prompts: list = []
        self.stops: list = []

    def generate(self, prompts: list, params: SamplingParams) -> list[list[Completion]]:
        self.prompts += prompts
        self.stops.append(params.stop)
        return [[Completion(f" It is so. The answer is {gold}.", 9, "stop")]
                for gold in self.golds[: len(prompts)]]

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("name", "first"), [("wei-8shot", WEI_GSM8K[0][0]), (None, None)])
def test_evaluate_records_and_prints_the_prompt(name: str | None, first: str | None,
                                                data_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    from restem_client.local_verifier import LocalVerifier

    problems = load("gsm8k", "test", data_dir)[:2]
    sampler = _Echo(problems)
    with LocalVerifier(sandbox=None) as verifier:
        metrics = evaluate(problems, sampler, verifier, SamplingParams(max_tokens=8),
                           tmp_path, data_dir=data_dir, prompt=name)
    assert metrics["accuracy"] == 1.0
    used = variant("gsm8k", name)
    assert sampler.prompts == [render(p, data_dir, prompt=used.name) for p in problems]
    if first:
        assert sampler.prompts[0].startswith(f"Q: {first}")
    assert sampler.stops == [stop_sequences(problems[0], prompt=used.name)]
    config = json.loads((tmp_path / "results.json").read_text())["config"]
    assert config["prompt"] == {"variant": used.name, "source": used.source,
                                "extraction": used.extraction}
    assert f"prompt: {used.name} (" in capsys.readouterr().err


def test_evaluate_refuses_an_unknown_variant_before_sampling(data_dir: Path,
                                                             tmp_path: Path) -> None:
    problems = load("gsm8k", "test", data_dir)[:1]
    sampler = _Echo(problems)
    with pytest.raises(ValueError, match="unknown prompt variant 'minerva-4shot' for gsm8k"):
        evaluate(problems, sampler, None, SamplingParams(), tmp_path, data_dir=data_dir,
                 prompt="minerva-4shot")
    assert sampler.prompts == []


@pytest.mark.slow
@pytest.mark.parametrize(("option", "expected"), [([], "wei-8shot"),
                                                  (["--prompt", "zero-shot"], "zero-shot")])
def test_restem_eval_prints_and_records_the_variant(option: list[str], expected: str,
                                                    tiny_model: Path, data_dir: Path,
                                                    tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "eval"
    run = subprocess.run(
        [sys.executable, "-m", "restem_client.cli", "eval", "--task", "gsm8k", "--model",
         str(tiny_model), "--backend", "hf", "--limit", "2", "--max-tokens", "4",
         "--data-dir", str(data_dir), "--out", str(out), "--sandbox", "local", *option],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    used = variant("gsm8k", expected)
    assert f"prompt: {expected} ({used.source}); extraction: {used.extraction}" in run.stderr
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["prompt"]["variant"] == expected
    assert config["prompt"]["extraction"] == used.extraction
    assert config["sampling"]["stop"] == list(stop_sequences(load("gsm8k", "test", data_dir)[0],
                                                             prompt=expected))


def test_the_harness_draws_are_the_same_from_many_threads() -> None:
    """Draw k belongs to test document k whichever thread renders it first."""
    from concurrent.futures import ThreadPoolExecutor

    from evals.prompts import _Draws

    expected = [_Draws(7473, 5)[k] for k in range(300)]
    shared = _Draws(7473, 5)
    order = list(range(300))[::-1] + list(range(300))
    with ThreadPoolExecutor(max_workers=8) as threads:
        got = list(threads.map(lambda k: (k, shared[k]), order))
    assert all(draw == expected[k] for k, draw in got)


LIGHTEVAL = Path(__file__).parent / "data" / "lighteval_fewshot.json"


def test_lighteval_variants_pick_what_lighteval_picks(data_dir: Path) -> None:
    """The exemplars lighteval's own sampler code picks on the local files (recorded by
    tests/data/record_lighteval_fewshot.py): each BBH task's balanced pool, the exemplars of
    its row 0 and of the pool's first row (which gets the pool's other three), and the train
    rows drawn for four GSM8K test rows."""
    recorded = json.loads(LIGHTEVAL.read_text())
    assert len(recorded["bbh"]) == 27
    for task, picked in recorded["bbh"].items():
        problems = load(f"bbh/{task}", "test", data_dir)
        for row, rows in picked.items():
            if row == "pool":
                continue
            messages = render(problems[int(row)], data_dir, chat=True, prompt="lighteval-3shot")
            expected = [m for r in rows for m in (
                {"role": "user", "content": f"Question: {problems[r].question}\nAnswer: "},
                {"role": "assistant", "content": problems[r].gold})]
            assert messages[:-1] == expected, (task, row)
        pool = picked["pool"]
        assert picked[str(pool[0])] == pool[1:]
        assert picked["0"] == ([r for r in pool if r != 0][:3] if 0 in pool else pool[:3])
    train = load("gsm8k", "train", data_dir)
    test = load("gsm8k", "test", data_dir)
    for row, rows in recorded["gsm8k"].items():
        messages = render(test[int(row)], data_dir, chat=True, prompt="lighteval-5shot")
        assert [m["content"] for m in messages[:-1]] == [
            text for r in rows for text in (f"Question: {train[r].question}\nAnswer:",
                                            f" {train[r].solutions[0]}")]


def test_lighteval_layout_chat_and_plain(data_dir: Path) -> None:
    """A user turn per exemplar answered by an assistant turn, then the problem; without the
    chat template, the turns joined by a blank line (lighteval's plain layout). Its stops
    hold in a chat too, as lighteval passes them to vLLM."""
    problem = load("bbh/navigate", "test", data_dir)[5]
    messages = render(problem, data_dir, chat=True, prompt="lighteval-3shot")
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert messages[-1]["content"] == f"Question: {problem.question}\nAnswer: "
    plain = render(problem, data_dir, prompt="lighteval-3shot")
    assert plain == "\n\n".join([messages[i]["content"] + messages[i + 1]["content"]
                                 for i in range(0, 6, 2)] + [messages[-1]["content"]])
    for chat in (True, False):
        assert stop_sequences(problem, chat=chat, prompt="lighteval-3shot") == (
            "Question:", "Question")
    assert stop_sequences(problem, chat=True) == ()  # the loop's variant: the model's own end
    # A variant named after a harness task keeps the harness's stops in a chat too.
    assert stop_sequences(problem, chat=True, prompt="harness-3shot-cot") == ("</s>", "Q", "\n\n")
    assert stop_sequences(problem, chat=True, prompt="suzgun-3shot-cot") == ()
    gsm8k = load("gsm8k", "test", data_dir)[0]
    assert len(render(gsm8k, data_dir, chat=True, prompt="lighteval-5shot")) == 11
    with pytest.raises(ValueError, match="lighteval-5shot draws by the test problem's position"):
        render(load("gsm8k", "train", data_dir)[0], data_dir, prompt="lighteval-5shot")


def test_lighteval_bbh_reads_the_whole_completion(data_dir: Path) -> None:
    """lighteval-3shot's answer is the completion itself: a bare "True" passes, and a chain of
    thought that ends "So the answer is True." does not (nothing is extracted from it)."""
    from evals.evaluate import sample_record
    from evals.score import parse_line
    from restem_client.local_verifier import LocalVerifier

    problem = next(p for p in load("bbh/boolean_expressions", "test", data_dir)
                   if p.gold == "True")
    bare = sample_record(problem, " True\n", chat=True, extract=False)
    reasoned = sample_record(problem, "Not False is True. So the answer is True.", chat=True,
                             extract=False)
    assert bare["extract"] is False and "extract" not in sample_record(problem, "x", True)
    with LocalVerifier(sandbox=None) as verifier:
        results = verifier.check_many([parse_line(json.dumps(r), {problem.task_id: problem})[1]
                                       for r in (bare, reasoned)])
    assert [r.verdict.value for r in results] == ["PASS", "FAIL"]
