"""The math worker pool under failure, with real worker processes: workers killed in the
middle of a batch, a pool busy past a caller's timeout, and workers that cannot start. Every
call ends within its timeout with a right verdict or TIMEOUT (never FAIL, never a hang), and
the pool comes back once workers run again."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from evals.checks import Verdict
from verifier_server.math import check, check_many
from verifier_server.math.compare import fast_equal
from verifier_server.math.pool import FILL_THREAD, NoWorkerAvailable, WorkerPool
from verifier_server.math.values import parse_answer

SLACK_S = 0.3  # how far past its timeout a call may end

# Symbolic pairs (answer, gold) with their verdicts: k-th squares, expanded right and wrong.
QUICK = [*((f"x^2+{2 * k}x+{k * k}", f"(x+{k})^2", Verdict.PASS) for k in range(1, 9)),
         *((f"x^2+{2 * k}x+{k * k + 1}", f"(x+{k})^2", Verdict.FAIL) for k in range(1, 9))]


def cubes(n: int, wrong_last: bool = False) -> tuple[str, str]:
    """(answer, gold): a set of n cubes against their expansions in reverse order; each item
    is compared symbolically with many others, which takes about a second for n = 20."""
    expanded = [f"x^3+{3 * k}x^2+{3 * k * k}x+{k ** 3 + (wrong_last and k == n - 1)}"
                for k in range(n)]
    gold = "\\{" + ",".join(f"(x+{k})^3" for k in range(n)) + "\\}"
    return "\\{" + ",".join(reversed(expanded)) + "\\}", gold


SLOW = [(*cubes(20), Verdict.PASS), (*cubes(21, wrong_last=True), Verdict.FAIL)]


def test_the_cases_take_the_symbolic_path() -> None:
    for answer, gold, _ in QUICK + SLOW:
        assert fast_equal(parse_answer(gold), parse_answer(answer)) is None, (answer, gold)


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds the process has used (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_busy(pids: list[int], baseline: dict[int, float]) -> None:
    """Until every worker has spent 0.1 s of CPU since the baseline: each is mid-job."""
    deadline = time.monotonic() + 30
    while any(cpu_s(pid) - baseline[pid] < 0.1 for pid in pids):
        assert time.monotonic() < deadline, "the workers never got busy"
        time.sleep(0.01)


def test_workers_killed_mid_batch_give_timeouts_not_fails_and_the_pool_recovers() -> None:
    cases = SLOW + QUICK
    pairs = [(answer, gold) for answer, gold, _ in cases]
    with WorkerPool(workers=2) as pool, ThreadPoolExecutor(1) as caller:
        pids = pool.worker_pids()
        baseline = {pid: cpu_s(pid) for pid in pids}
        started = time.monotonic()
        batch = caller.submit(check_many, pairs, extract=False, timeout_s=30, pool=pool)
        wait_until_busy(pids, baseline)
        assert not batch.done()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        verdicts = batch.result(timeout=60)
        assert time.monotonic() - started < 30  # the deaths ended those jobs, not the timeout
        for (answer, gold, expected), got in zip(cases, verdicts, strict=True):
            assert got.verdict in (expected, Verdict.TIMEOUT), (answer, gold, got)
        died = [v for v in verdicts if v.verdict is Verdict.TIMEOUT]
        assert died and all("math worker died" in v.detail for v in died)
        again = check_many(pairs, extract=False, timeout_s=30, pool=pool)
        assert [v.verdict for v in again] == [expected for _, _, expected in cases]
        assert len(pool.worker_pids()) == 2 and not set(pool.worker_pids()) & set(pids)


def test_a_busy_pool_times_out_a_caller_within_its_timeout() -> None:
    answer, gold, _ = SLOW[0]
    with WorkerPool(workers=1) as pool, ThreadPoolExecutor(1) as caller:
        pids = pool.worker_pids()
        baseline = {pid: cpu_s(pid) for pid in pids}
        slow = caller.submit(check, answer, gold, extract=False, timeout_s=30, pool=pool)
        wait_until_busy(pids, baseline)
        started = time.monotonic()
        waited = check("x^2-1", "(x-1)(x+1)", extract=False, timeout_s=0.3, pool=pool)
        assert 0.3 <= time.monotonic() - started < 0.3 + SLACK_S
        assert waited.verdict is Verdict.TIMEOUT
        assert waited.detail == "no math worker free within 0.3 s (1 of 1 running)"
        assert slow.result(timeout=60).verdict is Verdict.PASS


BROKEN = "import sys\nsys.exit('broken install')\n"
WORKING = "import runpy\nrunpy.run_module('verifier_server.math.pool', run_name='__main__')\n"


def write(path: Path, text: str) -> None:
    """Replace the file in one step, so a worker starting meanwhile reads old or new."""
    path.with_suffix(".tmp").write_text(text)
    path.with_suffix(".tmp").replace(path)


def test_workers_that_cannot_start_give_timeout_in_time_and_the_pool_recovers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="verifier_server.math.pool")
    script = tmp_path / "worker.py"
    write(script, BROKEN)
    with WorkerPool(workers=1, command=[sys.executable, str(script)]) as pool:
        assert pool.worker_pids() == []
        started = time.monotonic()
        with pytest.raises(NoWorkerAvailable) as raised:
            pool.run(parse_answer("(x-1)(x+1)"), parse_answer("x^2-1"), 0.5)
        assert 0.5 <= time.monotonic() - started < 0.5 + SLACK_S
        assert not isinstance(raised.value, RuntimeError)  # check.py's FAIL is RuntimeError
        assert str(raised.value) == ("no math worker free within 0.5 s (0 of 1 running; last "
                                     "start failure: exited with code 1 before it was ready: "
                                     "broken install)")
        started = time.monotonic()
        verdict = check("x^2-1", "(x-1)(x+1)", extract=False, timeout_s=0.5, pool=pool)
        assert 0.5 <= time.monotonic() - started < 0.5 + SLACK_S
        assert verdict.verdict is Verdict.TIMEOUT and "broken install" in verdict.detail
        assert caplog.messages[0] == ("math worker failed to start (exited with code 1 before "
                                      "it was ready: broken install); retrying in 0.5 s")

        write(script, WORKING)  # starting works again: the retries bring the slot back
        verdict = check("x^2-1", "(x-1)(x+1)", extract=False, timeout_s=15, pool=pool)
        assert verdict.verdict is Verdict.PASS
        assert len(pool.worker_pids()) == 1
        assert caplog.messages[-1].startswith("math worker started after ")


def test_closing_stops_the_retries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="verifier_server.math.pool")
    pool = WorkerPool(workers=2, command=[sys.executable, "-c", "raise SystemExit(3)"])
    pool.close()
    retrying = [t for t in threading.enumerate() if t.name == FILL_THREAD]
    for thread in retrying:
        thread.join(timeout=2)
    assert not any(t.is_alive() for t in retrying)
    assert len(caplog.messages) == 2  # each slot's first try, and no retry after close
    assert "exited with code 3 before it was ready" in caplog.messages[0]
    started = time.monotonic()
    with pytest.raises(NoWorkerAvailable, match="closed"):
        pool.run(parse_answer("(x-1)(x+1)"), parse_answer("x^2-1"), 5)
    assert time.monotonic() - started < SLACK_S


def test_the_worker_command_must_be_an_argv() -> None:
    with pytest.raises(ValueError, match="command: the worker's argv"):
        WorkerPool(workers=1, command="python")
