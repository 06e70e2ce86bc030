"""The kept-set audit for prompts that show tests (MBPP): would a reward on the tests a sample
was shown let special-cased solutions (`if x == 3: return 8`) into the training data?

The loop's E-step prompt shows `estep_shown_tests` of a problem's asserts and rewards a
sample on all of them (evals.tasks.show_tests). The audit scores every sample once more
against the shown asserts alone and reports, from the two verdicts of each sample:
    pass_shown, pass_all           samples that pass the shown asserts, and all of them
    pass_shown_fail_unseen         pass what they were shown, fail an assert they were not
    kept, kept_fail_unseen         the kept set (`select` on the reward): the second is 0
                                   whenever the reward covers every unseen assert
    shown_reward_kept, ..._fail_unseen   the set that a reward on the shown asserts would
                                   have kept (same cap and seed), and how many of it fail
                                   an unseen assert: the hacks that design trains on
Only problems with an unseen assert count (with every assert shown there is nothing to tell
a hack from a solution).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from evals.problem import Problem
from evals.score import BatchVerifier, score_file
from evals.tasks import shown_asserts, unseen_asserts, with_asserts


def audit_kept(generate_dir: Path, problems: list[Problem], verifier: BatchVerifier,
               select: Any, prompts: dict[str, Any], cap: int, seed: str) -> dict[str, Any]:
    """The audit of an E-step's directory (samples.jsonl and samples_results.jsonl, in the
    same order); the shown-only verdicts go to shown_results.jsonl beside them. `select` is
    the loop's filter, called as select(results, prompts, cap, seed)."""
    audited = {p.task_id: with_asserts(p, shown_asserts(p)) for p in problems
               if unseen_asserts(p)}
    if not audited:
        return {"problems": 0}
    shown_results = generate_dir / "shown_results.jsonl"
    score_file(generate_dir / "samples.jsonl", shown_results, verifier, log=io.StringIO(),
               problems={**{p.task_id: p for p in problems}, **audited})
    counts = dict.fromkeys(("samples", "pass_shown", "pass_all", "pass_shown_fail_unseen"), 0)
    passed_all: set[tuple[str, str]] = set()
    with (generate_dir / "samples_results.jsonl").open() as rewarded, shown_results.open() as shown:
        for line_all, line_shown in zip(rewarded, shown, strict=True):
            full, only_shown = json.loads(line_all), json.loads(line_shown)
            if full.get("task_id") not in audited:
                continue
            counts["samples"] += 1
            counts["pass_shown"] += only_shown["passed"]
            counts["pass_all"] += full["passed"]
            counts["pass_shown_fail_unseen"] += only_shown["passed"] and not full["passed"]
            if full["passed"]:
                passed_all.add((full["task_id"], _text(full)))

    def kept_set(results: Path) -> tuple[int, int]:
        kept = [r for r in select(results, prompts, cap, seed) if r["task_id"] in audited]
        return len(kept), sum((r["task_id"], r["completion"]) not in passed_all for r in kept)

    kept, kept_fail = kept_set(generate_dir / "samples_results.jsonl")
    shown_kept, shown_kept_fail = kept_set(shown_results)
    return {"problems": len(audited), **counts, "kept": kept, "kept_fail_unseen": kept_fail,
            "shown_reward_kept": shown_kept, "shown_reward_kept_fail_unseen": shown_kept_fail}


def _text(record: dict[str, Any]) -> str:
    return record.get("completion", record.get("solution"))
