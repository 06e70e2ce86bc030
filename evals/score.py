"""Batch scoring of generations from a JSONL file (`restem score`).

Streams: lines are read, checked and scored in chunks, and written in input order, so memory
stays flat on any file size. Each input line is a JSON object with `task_id`, `completion`,
`gold`, and optionally `"mode": "gsm8k"` and `"extract": false`; each output line is the
input plus `passed`, `verdict`, `extracted`, `canonical` and `rule`. A malformed line is
reported with its line number and written as an `INVALID_REQUEST` record, so nothing is lost
and the other lines are still scored. Written against the small `BatchVerifier` protocol.
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

CHUNK = 512
RESULT_FIELDS = ("passed", "verdict", "extracted", "canonical", "rule")


class BatchVerifier(Protocol):
    def verify_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Math requests ({"kind": "math", "completion", "gold", "mode", "extract"}) to
        results ({"verdict", "extracted", "canonical", "rule"}), in order."""
        ...


class InvalidLine(ValueError):
    pass


@dataclass
class Summary:
    count: int = 0
    invalid: int = 0
    verdicts: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        scored = self.count - self.invalid
        return {"count": self.count, "scored": scored, "invalid": self.invalid,
                "accuracy": self.verdicts["PASS"] / scored if scored else None,
                "verdicts": dict(sorted(self.verdicts.items()))}


def parse_line(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The input record and its verifier request; InvalidLine names what is wrong."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidLine(f"not JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise InvalidLine("not a JSON object")
    for key in ("task_id", "completion", "gold"):
        if key not in record:
            raise InvalidLine(f"missing field {key!r}")
    for key in ("completion", "gold"):
        if not isinstance(record[key], str):
            raise InvalidLine(f"field {key!r} must be a string")
    mode = record.get("mode", "math")
    if mode not in ("math", "gsm8k"):
        raise InvalidLine(f"field 'mode' must be 'math' or 'gsm8k', not {mode!r}")
    extract = record.get("extract", True)
    if not isinstance(extract, bool):
        raise InvalidLine("field 'extract' must be true or false")
    request = {"kind": "math", "completion": record["completion"], "gold": record["gold"],
               "mode": mode, "extract": extract}
    return record, request


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
               log: IO[str] = sys.stderr) -> Summary:
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
                    record, request = parse_line(line)
                    parsed.append((number, record, request))
                except InvalidLine as exc:
                    parsed.append((number, None, str(exc)))
            requests = [req for _, rec, req in parsed if rec is not None]
            results = iter(verifier.verify_many(requests)) if requests else iter(())
            for number, record, request in parsed:
                summary.count += 1
                if record is None:
                    summary.invalid += 1
                    print(f"line {number}: {request}", file=log)
                    record = {"line": number, "error": request, "passed": False,
                              "verdict": "INVALID_REQUEST"}
                else:
                    result = next(results)
                    record = {**record, "passed": result["verdict"] == "PASS",
                              **{k: result.get(k) for k in RESULT_FIELDS[1:]}}
                summary.verdicts[record["verdict"]] += 1
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            progress.update(len(chunk))
    progress.close()
    partial.replace(output_path)
    report = summary.as_dict()
    summary_path(output_path).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report), file=log)
    return summary
