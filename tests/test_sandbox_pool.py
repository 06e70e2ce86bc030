"""A sandbox pool whose workers stop starting loses no slot and never makes a job wait:
while every slot fails to start, a job ends at once as SANDBOX_ERROR naming the cause, and
once starting works again the pool is back at its size (bubblewrap taken off PATH and put
back is the real failure here). A caller that joins an identical run in flight never takes
on the TIMEOUT that another caller's deadline gave that run. A worker whose job timed out
is kept when nothing is left of the job, and replaced when something is."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from sandbox import Limits, Sandbox, StdioTest
from sandbox.results import Status

pytestmark = pytest.mark.namespace


def test_a_slot_that_cannot_start_is_retried_until_it_can(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with Sandbox(backend="namespace", workers=1, cache_size=0) as sb:
        assert sb.execute("print(1)").status is Status.PASS
        monkeypatch.setenv("PATH", "/nonexistent")  # bubblewrap cannot be found any more
        [worker] = list(sb._all)
        os.kill(worker.launch.process.pid, signal.SIGKILL)  # the jail dies with it

        start = time.monotonic()
        failed = sb.run("print(int(input()) + 1)", [StdioTest("1\n", "2\n")])
        assert failed.verdict is Status.SANDBOX_ERROR
        assert "bubblewrap" in failed.detail, failed.detail
        assert time.monotonic() - start < 15  # not the 120 s acquire timeout
        assert "retrying in" in caplog.text

        monkeypatch.undo()
        assert sb.wait_ready(30), "the slot did not come back once bubblewrap was found again"
        assert sb.run("print(int(input()) + 1)", [StdioTest("1\n", "2\n")]).passed


def test_a_joined_run_cut_by_its_owners_deadline_is_run_again_for_a_caller_without_one(
        ) -> None:
    sleeper = "import time\ntime.sleep(float(input()))\nprint('done')"
    tests = [StdioTest("1.5", "done\n")]
    with Sandbox(backend="namespace", workers=2, cache_size=0) as sb:
        sb.wait_ready(30)
        owner: list = []
        thread = threading.Thread(target=lambda: owner.append(
            sb.run(sleeper, tests, deadline=time.monotonic() + 0.7)))
        thread.start()
        time.sleep(0.2)  # the owner's run is in flight: the same program and tests join it
        joined = sb.run(sleeper, tests)
        thread.join(30)
    assert owner[0].verdict is Status.TIMEOUT
    assert joined.verdict is Status.PASS, joined  # not the owner's TIMEOUT


def test_a_caller_waiting_on_an_identical_run_stops_at_its_own_deadline() -> None:
    sleeper = "import time\ntime.sleep(float(input()))\nprint('done')"
    tests = [StdioTest("3", "done\n")]
    with Sandbox(backend="namespace", workers=2, cache_size=0) as sb:
        sb.wait_ready(30)
        owner: list = []
        thread = threading.Thread(target=lambda: owner.append(sb.run(sleeper, tests)))
        thread.start()
        time.sleep(0.2)  # the owner's 3 s run is in flight; this caller joins it
        start = time.monotonic()
        joined = sb.run(sleeper, tests, deadline=time.monotonic() + 0.5)
        waited = time.monotonic() - start
        thread.join(30)
    assert joined.verdict is Status.TIMEOUT and waited < 2.0, (joined, waited)
    assert owner[0].verdict is Status.PASS  # the owner's run went on


def test_a_timeout_keeps_a_clean_worker_and_replaces_one_with_leftovers() -> None:
    spin = "while True:\n    pass\n"
    # The job forks a child into a session of its own, then spins: the child is a leftover.
    escape = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
              "while True:\n    pass\n")
    with Sandbox(backend="namespace", workers=1, cache_size=0,
                 limits=Limits(cpu_s=0.3, wall_s=2.0)) as sb:
        sb.wait_ready(30)
        [before] = sb.inspect()
        assert sb.execute(spin).status is Status.TIMEOUT
        [after] = sb.inspect()
        assert after["pong"] == before["pong"] and sb.stats["replaced"] == 0
        assert after["processes"] == 0 and after["scratch"] == []

        ran = sb.execute(escape)
        assert ran.status is Status.TIMEOUT and ran.leftovers >= 1, ran
        assert sb.wait_ready(30)
        assert sb.stats["replaced"] == 1
        assert sb.execute("print(1)").stdout == "1\n"
