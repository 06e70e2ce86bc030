"""The docker backend's control channel: a unix socket the host listens on, which the
executor proves with a nonce, instead of Docker's stdio relay. Jobs cannot reach it, a
stranger who connects first is not let in, and a worker whose executor cannot reach the
socket (an engine that does not see our directory) speaks over stdio instead."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from sandbox import Sandbox, StdioTest, backends
from sandbox.results import Status

REACH_THE_SOCKET = """
import os, socket
for path in ("/run/restem-control", "/run/restem-control/socket"):
    try:
        print(path, sorted(os.listdir(path)) if os.path.isdir(path) else "not a directory")
    except OSError as exc:
        print(path, type(exc).__name__)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        print("CONNECTED", path)
    except OSError as exc:
        print(path, "refused", type(exc).__name__)
"""


def only_worker(sb: Sandbox):
    assert sb.wait_ready(60)
    [worker] = list(sb._all)
    return worker


@pytest.mark.docker
def test_a_docker_worker_speaks_on_its_socket_which_no_job_can_reach() -> None:
    with Sandbox(backend="docker", workers=1, cache_size=0) as sb:
        worker = only_worker(sb)
        assert worker._channel is not None, "the executor did not connect to its socket"
        # Every local user can read a command line in /proc: the nonce is not on it.
        cmdline = Path(f"/proc/{worker.launch.process.pid}/cmdline").read_bytes()
        assert b"RESTEM_CONTROL_NONCE" in cmdline
        assert worker.launch.control.nonce.encode() not in cmdline
        probe = sb.execute(REACH_THE_SOCKET)
        assert probe.status == "PASS", probe.stderr
        assert "CONNECTED" not in probe.stdout, probe.stdout
        assert "refused" in probe.stdout, probe.stdout
        assert sb.run("print(int(input()) * 2)", [StdioTest("21\n", "42\n")]).passed
    assert not os.path.exists(worker.launch.control.directory)  # nothing left on the host


class UnreachableSocket(backends.ControlSocket):
    """A socket the container's uid may not connect to, as when the engine runs elsewhere."""

    def __init__(self, parent: str | None) -> None:
        super().__init__(parent)
        os.chmod(self.path, 0o600)


@pytest.mark.docker
def test_a_worker_whose_executor_cannot_reach_the_socket_speaks_over_stdio(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "ControlSocket", UnreachableSocket)
    with Sandbox(backend="docker", workers=1, cache_size=0) as sb:
        worker = only_worker(sb)
        assert worker._channel is None
        result = sb.run("print(int(input()) * 2)", [StdioTest("21\n", "42\n")])
        assert result.passed, result
        assert sb.run("print(1)", [StdioTest("", "2\n")]).verdict is Status.FAIL


def test_a_stranger_who_connects_first_is_not_let_in(tmp_path) -> None:
    control = backends.ControlSocket(str(tmp_path))
    strangers = []

    def connect(proof: bytes) -> None:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(control.path)
        if proof:
            client.sendall(proof)
        strangers.append(client)

    connect(b"0" * len(control.nonce))  # the wrong nonce
    connect(b"")  # connects and says nothing
    # The executor comes last; its connection is the one handed back.
    threading.Timer(0.2, lambda: connect(control.nonce.encode())).start()
    start = time.monotonic()
    readers, writers = os.pipe()
    try:
        accepted = control.accept(time.monotonic() + 30, readers)
        assert accepted is not None
        # Read side by side: the silent stranger did not hold the executor's turn.
        assert time.monotonic() - start < backends.PROOF_TIMEOUT_S - 0.1
        accepted.sendall(b"hello")
        assert strangers[-1].recv(5) == b"hello"
        assert not os.path.exists(control.path)  # nobody connects after it
        accepted.close()
    finally:
        for client in strangers:
            client.close()
        os.close(readers)
        os.close(writers)
        control.close()
    assert not os.path.exists(control.directory)
