"""Task loaders on ../shared/data: counts, golds, metadata, and APPS from both layouts."""

from __future__ import annotations

import pytest

from evals.tasks import apps_problem, boxed_answer, first, load

EMPTY_BOXED = {"train/number_theory/7115.json", "train/number_theory/7117.json"}


@pytest.mark.parametrize(("name", "split", "count"), [
    ("math", "train", 7500), ("math", "test", 5000), ("math", "math500", 500),
    ("gsm8k", "train", 7473), ("gsm8k", "test", 1319), ("bbh", "test", 6511),
    ("humaneval", "test", 164), ("apps", "train", 5),
])
def test_counts_and_golds(data_dir, name: str, split: str, count: int) -> None:
    problems = load(name, split, data_dir)
    assert len(problems) == count
    assert len({p.task_id for p in problems}) == count
    for p in problems:
        assert p.question.strip()
        if p.task_id in EMPTY_BOXED:
            assert p.gold == ""  # the dataset's own solution ends in an empty \boxed{}
            continue
        assert (p.gold.strip() != "") == (p.kind in ("math", "exact"))
        assert bool(p.tests) == (p.kind == "code")


def test_math_metadata(data_dir) -> None:
    problems = load("math", "test", data_dir)
    assert {p.meta["level"] for p in problems} <= {1, 2, 3, 4, 5, None}
    assert len({p.meta["subject"] for p in problems}) == 7
    math500 = load("math", "math500", data_dir)
    assert all(p.gold == boxed_answer(p.solutions[0]) or p.gold for p in math500)


def test_boxed_answer() -> None:
    assert boxed_answer("so $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert boxed_answer("\\boxed{1} then \\boxed{\\{2, 3\\}}") == "\\{2, 3\\}"
    with pytest.raises(ValueError):
        boxed_answer("no answer")


def test_bbh_one_task_and_unknown(data_dir) -> None:
    navigate = load("bbh/navigate", data_dir=data_dir)
    assert navigate and {p.meta["task"] for p in navigate} == {"navigate"}
    with pytest.raises(ValueError, match="unknown task"):
        load("mmlu")


def test_a_limit_counts_each_bbh_task(data_dir) -> None:
    """As lm-evaluation-harness's --limit: the first N of each BBH task, of the whole list
    elsewhere (MATH's subjects are not tasks)."""
    bbh = load("bbh", "test", data_dir)
    picked = first(bbh, 3)
    assert len(picked) == 3 * 27
    assert [p.task_id for p in picked[:4]] == [
        "bbh/boolean_expressions/0", "bbh/boolean_expressions/1", "bbh/boolean_expressions/2",
        "bbh/causal_judgement/0"]
    math = load("math", "test", data_dir)
    assert first(math, 5) == math[:5] and first(math, None) == math == first(math, 0)


def test_apps_from_both_layouts_is_the_same(data_dir, tmp_path) -> None:
    from_jsonl = load("apps", "train", data_dir)
    (tmp_path / "apps").symlink_to(data_dir / "apps" / "coderl_sample", target_is_directory=True)
    # the folder layout alone: apps/coderl_sample/train/<id>/
    layout = tmp_path / "only_folders"
    (layout / "apps" / "coderl_sample").mkdir(parents=True)
    (layout / "apps" / "coderl_sample" / "train").symlink_to(
        data_dir / "apps" / "coderl_sample" / "train", target_is_directory=True)
    from_folders = load("apps", "train", layout)
    assert [p.task_id for p in from_folders] == [p.task_id for p in from_jsonl]
    for a, b in zip(from_jsonl, from_folders, strict=True):
        assert a.tests == b.tests and a.solutions == b.solutions
        assert a.meta["difficulty"] == b.meta["difficulty"]
    call = [p for p in from_jsonl if "call" in p.tests]
    assert {p.tests["call"]["fn_name"] for p in call} == {"findKthPositive", "is_prime"}


def test_apps_record_conversion() -> None:
    record = {"problem_id": 9, "question": "q", "solutions": '["print(1)"]',
              "input_output": '{"inputs": ["1\\n"], "outputs": ["1\\n"]}',
              "difficulty": "introductory", "starter_code": ""}
    p = apps_problem(record)
    assert p.tests == {"stdio": {"cases": [("1\n", "1\n")]}} and p.solutions == ("print(1)",)
