"""Hostile programs on every isolating backend, one at a time and above the core count.

After each: the expected status, no VIOLATION marker or leaked secret in any output, no
process left in the worker or on the host beyond the pool's executors, the scratch space
empty, the pool back at its size, and the canary passing. (The `local` backend isolates
nothing by design and is not run here.)
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sandbox import AssertTest, CallTest, Limits, Sandbox, StdioTest
from tests.adversarial import MARK, PROGRAMS, SECRET_ENV, SECRET_VALUE, Hostile

FAST = Limits(cpu_s=1.0, wall_s=3.0, memory_mb=256)
CHECK = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(1, 1) == 2\n"
BACKENDS = [pytest.param("docker", marks=pytest.mark.docker, id="docker"),
            pytest.param("namespace", marks=pytest.mark.namespace, id="bwrap")]


def run_hostile(sb: Sandbox, hostile: Hostile):
    """(status, every text the run produced) for one hostile program."""
    if hostile.kind == "execute":
        ex = sb.execute(hostile.program, limits=FAST)
        return ex.status, [ex.stdout, ex.stderr, ex.detail]
    tests = {
        "stdio": [StdioTest("", "42\n")],
        "call": [CallTest("add", [2, 3], 5)],
        "assert": [AssertTest(CHECK, "add")],
    }[hostile.kind]
    result = sb.run(hostile.program, tests, FAST)
    texts = [result.detail] + [t.stdout + t.stderr + t.detail for t in result.tests]
    return result.verdict, texts


def executor_processes() -> int:
    """Processes on this host running the sandbox executor (in any container or jail). An
    idle worker has two: the executor and the child it prepared for the next job."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            argv = cmdline.split(b"\0")
            count += b"python" in Path(argv[0].decode()).name.encode() and (
                b"/opt/restem/executor.py" in argv
            )
    return count


def assert_pool_clean(sb: Sandbox, executors: int) -> None:
    """`executors`: how many executor processes the host should run (this pool and others)."""
    assert sb.wait_ready(120), "the pool did not come back to its size"
    for answer in sb.inspect():
        assert answer.get("processes") == 0, answer
        assert answer.get("scratch") == [], answer
    assert sb.canary(), "the canary failed after the run"
    deadline = time.monotonic() + 30
    while executor_processes() != executors and time.monotonic() < deadline:
        time.sleep(0.2)  # replaced workers are torn down in the background
    assert executor_processes() == executors


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def host_secret():
    path = Path(f"/tmp/restem-host-secret-{uuid.uuid4().hex}")
    path.write_text(SECRET_VALUE)
    os.environ[SECRET_ENV] = SECRET_VALUE
    yield path
    path.unlink()
    del os.environ[SECRET_ENV]


@pytest.fixture(scope="module")
def one_worker(backend: str, host_secret):
    others = executor_processes()
    with Sandbox(backend=backend, workers=1, cache_size=0) as sb:
        sb.expected_executors = others + 2 * sb.size
        yield sb


def test_there_are_at_least_thirty() -> None:
    assert len(PROGRAMS) >= 30
    assert len({h.name for h in PROGRAMS}) == len(PROGRAMS)


@pytest.mark.parametrize("hostile", PROGRAMS, ids=lambda h: h.name)
def test_hostile_program_alone(one_worker: Sandbox, hostile: Hostile) -> None:
    status, texts = run_hostile(one_worker, hostile)
    assert status == hostile.expected, texts
    for text in texts:
        assert MARK not in text and SECRET_VALUE not in text, text[:500]
    assert_pool_clean(one_worker, one_worker.expected_executors)


def test_hostile_programs_above_core_count(backend: str, host_secret) -> None:
    workers = 2 * (os.cpu_count() or 1)
    others = executor_processes()
    with Sandbox(backend=backend, workers=workers, cache_size=0) as sb:
        with ThreadPoolExecutor(2 * workers) as threads:
            outcomes = list(threads.map(lambda h: run_hostile(sb, h), PROGRAMS))
        wrong = [
            (h.name, h.expected, status)
            for h, (status, _) in zip(PROGRAMS, outcomes, strict=True)
            if status != h.expected
        ]
        assert not wrong
        for _, texts in outcomes:
            assert not any(MARK in t or SECRET_VALUE in t for t in texts)
        assert_pool_clean(sb, others + 2 * workers)
