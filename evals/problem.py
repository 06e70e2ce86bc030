"""`Problem`: one benchmark problem and what its verifier needs, the type every task loader
(evals.tasks, evals.arithmetic) returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    task_id: str
    question: str  # the problem statement as the dataset gives it
    kind: str  # verifier task: "math", "exact" or "code"
    gold: str = ""  # math/exact: the reference answer
    mode: str = "math"  # math: "math" or "gsm8k"
    tests: dict[str, Any] = field(default_factory=dict)  # code: stdio, call or asserts
    meta: dict[str, Any] = field(default_factory=dict)  # level, subject, difficulty, task...
    solutions: tuple[str, ...] = ()  # reference solutions, where the dataset has them
