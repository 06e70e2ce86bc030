"""The math checker on labeled cases this project did not write: the public test suites of
math-verify and lighteval (tests/data/math_peer_cases.jsonl), real SmolLM2 outputs labeled
by reading them (tests/data/math_model_cases.jsonl), published models' whole solutions
(tests/data/math_outside_solutions.jsonl) and other projects' grader and reward tests
(tests/data/math_outside_rewards.jsonl); their READMEs say where each case comes from. One
uniform call per case, as `restem score` makes it (in the case's mode, and on the whole
solutions also the default call, which must read GSM8K-style text unaided). The floors are
the agreement measured when the corpora were added (bench/math_verify.py prints it beside
math-verify's); they may only go up, and a regression lists the cases that changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifier_server.math import check_many

DATA = Path(__file__).resolve().parent / "data"
# (file, prediction field, agreement floor, most false positives allowed, whether every case
# gets the default call instead of its own mode)
CORPORA = [
    ("math_peer_cases.jsonl", "prediction", 0.96, 1, False),
    ("math_model_cases.jsonl", "completion", 0.99, 1, False),
    ("math_outside_solutions.jsonl", "prediction", 0.94, 0, False),
    ("math_outside_solutions.jsonl", "prediction", 0.95, 0, True),
    ("math_outside_rewards.jsonl", "prediction", 0.94, 6, False),
]


def disagreements(rows: list[dict], field: str, default: bool) -> list[tuple[dict, str]]:
    """(case, verdict) for every case whose verdict differs from its label (in the case's
    mode, or with the default call)."""
    out = []
    mode_of = (lambda r: "math") if default else (lambda r: r.get("mode", "math"))
    for mode in sorted({mode_of(r) for r in rows}):
        subset = [r for r in rows if mode_of(r) == mode]
        verdicts = check_many([(r[field], r["gold"]) for r in subset], mode=mode)
        out += [(r, v.verdict) for r, v in zip(subset, verdicts, strict=True)
                if v.passed != r["expected"]]
    return out


@pytest.mark.parametrize(("name", "field", "floor", "max_false_positives", "default"), CORPORA,
                         ids=[c[0] + (" default call" if c[4] else "") for c in CORPORA])
def test_agreement_with_labels_we_did_not_write(name: str, field: str, floor: float,
                                                max_false_positives: int, default: bool) -> None:
    rows = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    assert len(rows) >= 190 and {r["expected"] for r in rows} == {True, False}
    wrong = disagreements(rows, field, default)
    false_positives = [(r, v) for r, v in wrong if not r["expected"]]
    shown = [(r["source"], r["gold"][:60], r[field][-80:], str(v)) for r, v in wrong[:40]]
    assert 1 - len(wrong) / len(rows) >= floor, shown
    assert len(false_positives) <= max_false_positives, false_positives
