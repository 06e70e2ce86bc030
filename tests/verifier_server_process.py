"""Start `restem serve` as a real subprocess on loopback, for the service tests and the
load benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, *args: str, port: int | None = None, sandbox: str = "namespace",
                 workers: int = 2, env: dict | None = None) -> None:
        self.port = port or free_port()
        fd, self.log_path = tempfile.mkstemp(prefix="restem-serve-", suffix=".log")
        argv = [sys.executable, "-m", "restem_client.cli", "serve", "--port", str(self.port),
                "--sandbox", sandbox, "--sandbox-workers", str(workers), *args]
        self.process = subprocess.Popen(argv, cwd=REPO, stdout=fd, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})
        os.close(fd)
        self.target = f"127.0.0.1:{self.port}"

    def wait_serving(self, timeout_s: float = 120.0) -> ServerProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"restem serve exited {code}: {self.output()}")
            if "serving on" in self.output():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"restem serve did not start: {self.output()}")

    def output(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 90.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.wait_serving()

    def __exit__(self, *exc) -> None:
        self.stop()
        os.unlink(self.log_path)
