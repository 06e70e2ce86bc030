"""Our math checker against math-verify, side by side on the same cases in the same run.

Case sets:
- `peers`: tests/data/math_peer_cases.jsonl, labeled (gold, prediction) pairs harvested from
  the public test suites of math-verify and lighteval (cases we did not write);
- `SmolLM2 outputs`: tests/data/math_model_cases.jsonl, real completions of the embedded
  model on MATH-500 and GSM8K, labeled by reading them;
- `outside solutions`: tests/data/math_outside_solutions.jsonl, whole model solutions
  (GSM8K, MGSM and MATH style, boxed and unboxed) from published evaluation logs, labeled
  by reading them;
- `outside rewards`: tests/data/math_outside_rewards.jsonl, cases from other projects'
  reward-function and grader tests (short answer sentences, extracted answers, solutions);
- `labeled (ours)`: tests/data/math_cases.tsv, bare answers written to our own conventions
  (consistency, not accuracy);
- `MATH-500 rewrites`: each reference solution against its own `answer` (PASS) and the next
  problem's (FAIL).
Both checkers get one uniform call per case: ours `check(prediction, gold)`, the default
call (bare answers with extract=False; where a set names a case's mode, a second row with
that mode), math-verify `verify(parse(gold), parse(prediction))` as its README recommends
(bare answers wrapped in `$...$`, its best case). Both run serially on the main
thread. Prints agreement with the labels, false positives and negatives, median and p99
latency per check, and the ratios.

    .venv/bin/python bench/math_verify.py [--data ../shared/data] [--repeat 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

from verifier_server.math import check
from verifier_server.math.pool import default_pool

# This file is named like the peer package: drop its own folder from the import path first.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from math_verify import parse, verify  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


Case = tuple[str, str, bool, bool, str]  # gold, prediction, label, extract, mode


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def peer_cases() -> list[Case]:
    return [(r["gold"], r["prediction"], r["expected"], True, "math")
            for r in jsonl(REPO / "tests/data/math_peer_cases.jsonl")]


def model_cases() -> list[Case]:
    return [(r["gold"], r["completion"], r["expected"], True, r["mode"])
            for r in jsonl(REPO / "tests/data/math_model_cases.jsonl")]


def outside_cases(name: str) -> list[Case]:
    return [(r["gold"], r["prediction"], r["expected"], True, r.get("mode", "math"))
            for r in jsonl(REPO / "tests/data" / f"math_outside_{name}.jsonl")]


def labeled_cases() -> list[Case]:
    with (REPO / "tests/data/math_cases.tsv").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r["gold"], r["answer"], r["expected"] == "PASS", False, "math") for r in rows]


def math500_cases(data: Path) -> list[Case]:
    rows = jsonl(data / "math/math500_test.jsonl")
    cases = [(r["answer"], r["solution"], True, True, "math") for r in rows]
    for i, r in enumerate(rows):
        other = rows[(i + 1) % len(rows)]["answer"]
        if "".join(other.split()) != "".join(r["answer"].split()):
            cases.append((other, r["solution"], False, True, "math"))
    return cases


def ours(gold: str, answer: str, extract: bool, mode: str) -> bool:
    """The default call: one uniform call whatever the text's convention."""
    return check(answer, gold, extract=extract).passed


def ours_in_mode(gold: str, answer: str, extract: bool, mode: str) -> bool:
    """With the mode the case set names (GSM8K cases in "gsm8k" mode)."""
    return check(answer, gold, extract=extract, mode=mode).passed


def peer(gold: str, answer: str, extract: bool, mode: str) -> bool:
    wrap = (lambda s: s) if extract else (lambda s: f"${s}$")
    return bool(verify(parse(wrap(gold)), parse(wrap(answer))))


def run(name: str, fn, cases, repeat: int) -> dict:
    latencies, agree, false_pos, false_neg = [], 0, 0, 0
    for gold, answer, label, extract, mode in cases:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            try:
                got = fn(gold, answer, extract, mode)
            except Exception:  # a peer that raises scores the case as not passed
                got = False
            times.append(time.perf_counter() - start)
        latencies.append(statistics.median(times))
        agree += got == label
        false_pos += got and not label
        false_neg += label and not got
    latencies.sort()
    return {"name": name, "agreement": agree / len(cases), "false_positives": false_pos,
            "false_negatives": false_neg,
            "median_ms": statistics.median(latencies) * 1e3,
            "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=1, help="timings per case (median)")
    args = parser.parse_args()
    default_pool()  # start our workers before timing, as a server does
    check("\\sqrt{8}", "2\\sqrt{2}", extract=False)
    peer("1", "1", False, "math")
    sets = {"peers": peer_cases(), "SmolLM2 outputs": model_cases(),
            "outside solutions": outside_cases("solutions"),
            "outside rewards": outside_cases("rewards"),
            "labeled (ours)": labeled_cases(), "MATH-500 rewrites": math500_cases(args.data)}
    print(f"# bench/math_verify.py on {os.cpu_count()} cores, repeat={args.repeat}")
    print("| case set | n | checker | agreement | false pos. | false neg. | median ms | p99 ms |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for set_name, cases in sets.items():
        a = run("restem", ours, cases, args.repeat)
        b = run("math-verify", peer, cases, args.repeat)
        rows = [a, b]
        if any(mode != "math" for *_, mode in cases):
            rows.insert(1, run("restem, the case's mode", ours_in_mode, cases, args.repeat))
        for r in rows:
            print(f"| {set_name} | {len(cases)} | {r['name']} | {r['agreement']:.3f} | "
                  f"{r['false_positives']} | {r['false_negatives']} | {r['median_ms']:.3f} | "
                  f"{r['p99_ms']:.2f} |")
        print(f"| {set_name} | | ratio restem/math-verify | "
              f"{a['agreement'] / b['agreement']:.3f} | | | "
              f"{a['median_ms'] / b['median_ms']:.3f} | {a['p99_ms'] / b['p99_ms']:.3f} |")


if __name__ == "__main__":
    main()
