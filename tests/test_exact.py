"""Exact-match answers on the real BIG-Bench Hard targets (all 27 tasks, 6,511 examples)."""

from __future__ import annotations

import itertools
import json

import pytest

from verifier_server.exact import check_exact, extract


def bbh_tasks(data_dir):
    for path in sorted((data_dir / "bbh" / "bbh").glob("*.json")):
        yield path.stem, json.loads(path.read_text())["examples"]


def test_every_target_passes_as_a_chain_of_thought_ending(data_dir) -> None:
    count = 0
    for task, examples in bbh_tasks(data_dir):
        for example in examples:
            target = example["target"]
            completion = f"Let's think step by step.\nSome reasoning.\nSo the answer is {target}."
            assert check_exact(completion, target).verdict == "PASS", (task, target)
            count += 1
    assert count == 6511


def test_other_targets_fail(data_dir) -> None:
    for task, examples in bbh_tasks(data_dir):
        targets = sorted({e["target"] for e in examples})
        for a, b in itertools.pairwise(targets):
            if a.casefold() != b.casefold():
                assert check_exact(f"So the answer is {b}.", a).verdict == "FAIL", (task, a, b)


def test_cot_prompt_exemplars_extract_their_answers(data_dir) -> None:
    for path in sorted((data_dir / "bbh" / "cot-prompts").glob("*.txt")):
        exemplars = path.read_text().split("\n\nQ:")[1:]
        assert exemplars, path.name
        for exemplar in exemplars:
            assert extract(exemplar), (path.name, exemplar[-80:])


@pytest.mark.parametrize(
    ("completion", "target", "verdict", "extracted"),
    [
        ("So the answer is (B).", "(B)", "PASS", "(B)"),
        ("So the answer is B.", "(B)", "PASS", "(B)"),
        ("So the answer is (B) 12 apples.", "(B)", "PASS", "(B)"),
        ("So the answer is (C).", "(B)", "FAIL", "(C)"),
        ("So the answer is Because of it.", "(B)", "FAIL", "Because of it"),
        ("So the answer is True.", "True", "PASS", "True"),
        ("so the answer is true", "True", "PASS", "true"),
        ("So the answer is **valid**.", "valid", "PASS", "valid"),
        ("So the answer is invalid.", "valid", "FAIL", "invalid"),
        ("The answer is 12. Then the answer is -37.", "-37", "PASS", "-37"),
        ("I do not know.", "Yes", "NO_ANSWER", ""),
    ],
)
def test_extraction_and_comparison(completion, target, verdict, extracted) -> None:
    result = check_exact(completion, target)
    assert (result.verdict, result.extracted) == (verdict, extracted)


def test_bare_answers_and_explicit_formats() -> None:
    assert check_exact("(A)", "(A)", extract_answer=False).verdict == "PASS"
    free = check_exact("A", "(A)", extract_answer=False, answer_format="free_text")
    assert free.verdict == "FAIL"
    assert check_exact("", "x", extract_answer=False).verdict == "NO_ANSWER"
