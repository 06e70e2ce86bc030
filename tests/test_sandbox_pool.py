"""A sandbox pool whose workers stop starting loses no slot and never makes a job wait:
while every slot fails to start, a job ends at once as SANDBOX_ERROR naming the cause, and
once starting works again the pool is back at its size (bubblewrap taken off PATH and put
back is the real failure here)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from sandbox import Sandbox, StdioTest
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
