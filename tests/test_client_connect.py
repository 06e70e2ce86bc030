"""The client never waits silently: against an address where nothing listens, or a server
that went away, it waits a bounded time saying so on stderr, then fails naming the address
and the gRPC status; a server that comes up within the wait is used. Real `restem`
subprocesses, real `restem serve` processes, real gRPC over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from evals.checks import CodeCheck, MathCheck, StdioTests
from restem_client.client import AsyncVerifierClient, VerifierClient, VerifierUnavailable
from tests.verifier_server_process import ServerProcess, free_port
from verifier_server.wire import to_request

RESTEM = Path(sys.executable).parent / "restem"
SLACK_S = 5.0  # process start-up and the first backoff, on a busy machine
SLOW = "import time\ntime.sleep(float(input()))\nprint('done')"


def _lines(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"task_id": "a", "completion": "so \\boxed{2}", "gold": "2"})
                    + "\n")
    return path


def _score(source: Path, *args: str, env: dict[str, str] | None = None
           ) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run([str(RESTEM), "score", str(source), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})
    return done, time.monotonic() - start


def _assert_gave_up(stderr: str, address: str, timeout: str) -> None:
    """Exactly the waiting line, then the one failure line: no traceback."""
    waiting, failure = stderr.splitlines()
    assert waiting == f"restem: waiting up to {timeout} s for the verifier at {address} " \
                      "(UNAVAILABLE) ..."
    assert failure.startswith(f"restem score: no verifier answered at {address} within "
                              f"{timeout} s: UNAVAILABLE: ")
    assert "Connection refused" in failure  # gRPC's detail, passed on


def test_cli_against_a_dead_port_exits_2_within_its_timeout(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    source = _lines(tmp_path)
    done, elapsed = _score(source, "--server", address, "--connect-timeout", "2")
    assert done.returncode == 2, done.stderr
    assert 2.0 <= elapsed < 2.0 + SLACK_S
    _assert_gave_up(done.stderr, address, "2")
    assert not (tmp_path / "in_results.jsonl").exists()


def test_cli_takes_the_timeout_from_the_environment(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    source = _lines(tmp_path)
    done, elapsed = _score(source, "--server", address, env={"RESTEM_CONNECT_TIMEOUT": "1"})
    assert done.returncode == 2, done.stderr
    assert 1.0 <= elapsed < 1.0 + SLACK_S
    _assert_gave_up(done.stderr, address, "1")
    # the flag wins over the environment
    done, _ = _score(source, "--server", address, "--connect-timeout", "0.2",
                     env={"RESTEM_CONNECT_TIMEOUT": "1"})
    assert "within 0.2 s" in done.stderr


@pytest.mark.parametrize(("args", "env", "named"), [
    (["--connect-timeout", "-1"], {}, "connect timeout -1.0: expected a number of seconds"),
    ([], {"RESTEM_CONNECT_TIMEOUT": "soon"}, "RESTEM_CONNECT_TIMEOUT='soon': expected a"),
])
def test_a_bad_timeout_is_one_line_naming_it(tmp_path: Path, args: list[str],
                                             env: dict[str, str], named: str) -> None:
    done, _ = _score(_lines(tmp_path), "--server", f"127.0.0.1:{free_port()}", *args, env=env)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("restem score: ") and named in line


def test_library_raises_verifier_unavailable_within_its_timeout() -> None:
    address = f"127.0.0.1:{free_port()}"
    check = MathCheck("\\boxed{1}", "1")
    request = to_request(check)
    with VerifierClient(address, connect_timeout_s=1.0) as client:
        for call in (lambda: client.verify(request), lambda: client.verify_many([request]),
                     lambda: client.check_many([check])):
            start = time.monotonic()
            with pytest.raises(VerifierUnavailable) as info:
                call()
            assert 1.0 <= time.monotonic() - start < 1.0 + 1.5
            assert isinstance(info.value, grpc.RpcError)  # old `except grpc.RpcError` holds
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert str(info.value).startswith(f"no verifier answered at {address} within 1 s: "
                                              "UNAVAILABLE: ")

    async def async_call() -> None:
        client = AsyncVerifierClient(address, connect_timeout_s=1.0)
        try:
            await client.check_many([check])
        finally:
            await client.close()

    start = time.monotonic()
    with pytest.raises(VerifierUnavailable):
        asyncio.run(async_call())
    assert time.monotonic() - start < 1.0 + 1.5


def test_library_takes_the_timeout_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RESTEM_CONNECT_TIMEOUT", "0.5")
    assert VerifierClient(f"127.0.0.1:{free_port()}").connect_timeout_s == 0.5
    monkeypatch.setenv("RESTEM_CONNECT_TIMEOUT", "-2")
    with pytest.raises(ValueError, match="RESTEM_CONNECT_TIMEOUT='-2'"):
        VerifierClient(f"127.0.0.1:{free_port()}")


@pytest.mark.slow
def test_a_server_that_comes_up_within_the_wait_is_used(tmp_path: Path) -> None:
    port = free_port()
    source = _lines(tmp_path)
    cli = subprocess.Popen([str(RESTEM), "score", str(source), "--server", f"127.0.0.1:{port}",
                            "--connect-timeout", "60"], stderr=subprocess.PIPE, text=True)
    try:
        waiting = cli.stderr.readline()  # it is waiting before the server starts
        assert waiting == f"restem: waiting up to 60 s for the verifier at 127.0.0.1:{port} " \
                          "(UNAVAILABLE) ...\n"
        server = ServerProcess(port=port, sandbox="none").wait_serving()
        try:
            rest = cli.communicate(timeout=60)[1]
        finally:
            server.stop()
    finally:
        cli.kill()
    assert cli.returncode == 0, rest
    assert "no verifier answered" not in rest
    result = json.loads((tmp_path / "in_results.jsonl").read_text())
    assert result["verdict"] == "PASS"


@pytest.mark.slow
@pytest.mark.namespace
def test_a_server_that_goes_away_mid_batch_ends_in_verifier_unavailable() -> None:
    server = ServerProcess().wait_serving()
    # a few answers stream back, the rest would take longer than the test
    checks = [CodeCheck(SLOW, StdioTests(((seconds, "done\n"),)))
              for seconds in ["0.1"] * 4 + ["30"] * 8]
    outcome: list[tuple[float, BaseException]] = []

    def run() -> None:
        try:
            client.check_many(checks)
        except BaseException as exc:  # the test inspects what ended it
            outcome.append((time.monotonic(), exc))

    with VerifierClient(server.target, connect_timeout_s=2.0, backoff_s=0.1) as client:
        worker = threading.Thread(target=run, daemon=True)  # a regression fails, not hangs
        worker.start()
        time.sleep(1.5)  # the stream is open, with work in flight
        server.stop(signal.SIGKILL)
        killed = time.monotonic()
        worker.join(2.0 + SLACK_S)
        assert not worker.is_alive(), "check_many still waiting after the connect timeout"
    os.unlink(server.log_path)
    (ended, error), = outcome
    assert isinstance(error, VerifierUnavailable), error
    assert ended - killed >= 2.0  # it waited for the server to come back first
    assert error.code() == grpc.StatusCode.UNAVAILABLE and server.target in str(error)


def test_restem_run_gives_up_on_its_verifier_before_any_sampling(tmp_path: Path) -> None:
    model = tmp_path / "model"  # never loaded: the run must stop before it would be
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    done = subprocess.run([str(RESTEM), "run", f"model={model}", f"verifier={address}",
                           f"run_dir={tmp_path / 'run'}"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "RESTEM_CONNECT_TIMEOUT": "1"})
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - start < 1.0 + SLACK_S
    *_, waiting, failure = done.stderr.splitlines()
    assert waiting.startswith(f"restem: waiting up to 1 s for the verifier at {address}")
    assert failure.startswith(f"restem run: no verifier answered at {address} within 1 s: "
                              "UNAVAILABLE: ")
    assert not (tmp_path / "run" / "base").exists()
