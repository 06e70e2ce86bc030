"""Audit a `restem run` directory on the embedded arith task: how many passing samples got the
right answer by doing the problem's steps in order (`evals.arithmetic.works_the_steps`), and
how many passed with steps skipped, reordered or wrong that happened to land on the answer.

    .venv/bin/python scripts/audit_arith_run.py runs/demo

For each iteration: the E-step's passing samples and the kept training set, by level, as
"worked/passed"; and the problems solved at all against those solved by working the steps.
For each evaluated model: test pass@1 by level and how many of those passes worked the steps.

`--write-worked DIR` also writes DIR/iter_<i>.jsonl, the kept samples that worked the steps,
to fine-tune on for the ablation "what if the verifier had rejected the lucky passes":
    python -m restem_client.finetune runs/demo/iter_2/finetune.toml \
        data=DIR/iter_2.jsonl out=runs/worked-2
    restem eval --task arith --split test --limit 200 --model runs/worked-2 --backend vllm \
        --chat --max-tokens 128
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.arithmetic import SIZES, problems, works_the_steps
from evals.tasks import read_jsonl

KNOWN = {p.task_id: p for split in SIZES for p in problems(split)}


def _worked(row: dict) -> bool:
    return works_the_steps(KNOWN[row["task_id"]], row["completion"])


def _by_level(rows: list[dict]) -> str:
    """Per level, how many of `rows` (passing samples) worked the steps: "L1 3/4, L2 ..." """
    passed, worked = Counter(), Counter()
    for row in rows:
        level = KNOWN[row["task_id"]].meta["level"]
        passed[level] += 1
        worked[level] += _worked(row)
    return ", ".join(f"L{lv} {worked[lv]}/{passed[lv]}" for lv in sorted(passed))


def audit(run: Path, write_worked: Path | None) -> None:
    steps = sorted((d for d in run.glob("iter_*") if d.is_dir()),
                   key=lambda d: int(d.name.split("_")[1]))
    for step in steps:
        results = step / "generate" / "samples_results.jsonl"
        if not results.exists():
            continue
        passing = [r for r in read_jsonl(results) if r["verdict"] == "PASS"]
        solved = {r["task_id"] for r in passing}
        solved_working = {r["task_id"] for r in passing if _worked(r)}
        print(f"{step.name} E-step passes (worked/passed): {_by_level(passing)}; "
              f"problems solved {len(solved)}, by working the steps {len(solved_working)}")
        kept = step / "train.jsonl"
        if kept.exists():
            rows = read_jsonl(kept)
            print(f"{step.name} kept (worked/kept): {_by_level(rows)}")
            if write_worked:
                write_worked.mkdir(parents=True, exist_ok=True)
                worked = [r for r in rows if _worked(r)]
                (write_worked / f"{step.name}.jsonl").write_text(
                    "".join(json.dumps(r) + "\n" for r in worked))
    for model in ["base", "sft", *(s.name for s in steps)]:
        results = run / model / "eval" / "test" / "samples_results.jsonl"
        if not results.exists():
            continue
        rows = read_jsonl(results)
        tasks = Counter(KNOWN[r["task_id"]].meta["level"] for r in rows)
        passing = [r for r in rows if r["verdict"] == "PASS"]
        print(f"{model} test pass@1 {len(passing) / len(rows):.1%} ({len(rows)} problems, per "
              f"level {dict(sorted(tasks.items()))}); passes worked/passed: {_by_level(passing)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a restem run directory of the arith task")
    parser.add_argument("--write-worked", type=Path, metavar="DIR",
                        help="write DIR/iter_<i>.jsonl: the kept samples that worked the steps")
    args = parser.parse_args()
    if not (args.run / "config.toml").exists():
        parser.error(f"{args.run} is not a run directory (no config.toml)")
    audit(args.run, args.write_worked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
