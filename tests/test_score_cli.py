"""`restem score` as a user runs it: real MATH-500 lines, malformed lines, the summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RESTEM = Path(sys.executable).parent / "restem"


def test_score_math500_with_malformed_lines(tmp_path: Path, data_dir: Path) -> None:
    rows = [json.loads(line) for line in (data_dir / "math/math500_test.jsonl").open()]
    lines = [json.dumps({"task_id": r["unique_id"], "completion": r["solution"],
                         "gold": r["answer"]}) for r in rows]
    wrong = json.dumps({"task_id": "wrong", "completion": "so \\boxed{7}", "gold": "8"})
    lines[10:10] = ["{not json", wrong, json.dumps({"task_id": "t", "gold": "1"})]
    lines.append(json.dumps({"task_id": "g", "completion": "He has 12 in total.",
                             "gold": "#### 12", "mode": "gsm8k"}))
    source = tmp_path / "gen.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = subprocess.run([str(RESTEM), "score", str(source)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 1, out.stderr  # malformed lines were reported
    assert "line 11: not JSON" in out.stderr
    assert "line 13: missing field 'completion'" in out.stderr
    results = [json.loads(x) for x in (tmp_path / "gen_results.jsonl").read_text().splitlines()]
    assert len(results) == len(lines)  # nothing lost
    by_id = {r.get("task_id"): r for r in results}
    assert by_id["wrong"]["verdict"] == "FAIL" and by_id["wrong"]["extracted"] == "7"
    assert by_id["g"]["passed"] and by_id["g"]["rule"] == "last_number"
    assert results[10] == {"line": 11, "error": results[10]["error"], "passed": False,
                           "verdict": "INVALID_REQUEST"}
    summary = json.loads((tmp_path / "gen_results.summary.json").read_text())
    assert summary["count"] == 504 and summary["invalid"] == 2
    assert summary["verdicts"] == {"PASS": 501, "FAIL": 1, "INVALID_REQUEST": 2}
    assert abs(summary["accuracy"] - 501 / 502) < 1e-12


def test_score_writes_to_the_given_output(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"task_id": "a", "completion": "0.5", "gold": "\\frac12",
                                  "extract": False}) + "\n")
    output = tmp_path / "out.jsonl"
    out = subprocess.run([str(RESTEM), "score", str(source), "-o", str(output)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    record = json.loads(output.read_text())
    assert record["passed"] and record["canonical"] == "1/2" and record["rule"] == "none"
    assert json.loads((tmp_path / "out.summary.json").read_text())["accuracy"] == 1.0


def test_score_missing_input_fails_clearly(tmp_path: Path) -> None:
    out = subprocess.run([str(RESTEM), "score", str(tmp_path / "nope.jsonl")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "input file not found" in out.stderr


def test_score_cpu_limit_reaches_each_program(tmp_path: Path) -> None:
    """A program spinning 1.5 s of CPU passes under the default limit (4 s) and times out
    under --cpu-limit 0.5; a negative limit is refused before anything runs."""
    spin = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5:\n"
            "    pass\nprint(7)\n")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"task_id": "spin", "solution": spin,
                                  "tests": {"stdio": {"cases": [["", "7\n"]]}}}) + "\n")
    verdicts = {}
    for limit in ("0", "0.5"):
        out = subprocess.run([str(RESTEM), "score", str(source), "--sandbox", "namespace",
                              "--cpu-limit", limit], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        verdicts[limit] = json.loads((tmp_path / "in_results.jsonl").read_text())["verdict"]
    assert verdicts == {"0": "PASS", "0.5": "TIMEOUT"}
    out = subprocess.run([str(RESTEM), "score", str(source), "--cpu-limit", "-1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--cpu-limit must be a number of seconds" in out.stderr


def test_extract_false_is_honoured_with_a_dataset_too(data_dir: Path) -> None:
    """`"extract": false` means the completion is the bare answer, inline or by task_id."""
    from evals.score import parse_line
    from evals.tasks import load

    gsm8k = load("gsm8k", "test", data_dir)[0]
    bbh = load("bbh/navigate", "test", data_dir)[0]
    problems = {gsm8k.task_id: gsm8k, bbh.task_id: bbh}
    for problem in (gsm8k, bbh):
        for extract in (True, False):
            line = json.dumps({"task_id": problem.task_id, "completion": "x",
                               "extract": extract})
            assert parse_line(line, problems)[1].extract is extract
    bad = json.dumps({"task_id": bbh.task_id, "completion": "x", "extract": "no"})
    with pytest.raises(ValueError, match="extract"):
        parse_line(bad, problems)
