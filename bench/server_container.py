"""Cold start of the verifier server container against the same server started on the host.

Both sides run `verifier_server.server` with the docker sandbox backend, the same number of
sandbox workers and a token, and are timed from launch (`docker run -d`, or the process
spawn) until the gRPC health service answers SERVING, through the same probe the image's
HEALTHCHECK runs. Then one scored batch (math and HumanEval lines) goes through each, and the
verdicts are compared. Also printed: the image sizes. Needs Docker and the images from
deploy/build-images.sh.

    .venv/bin/python bench/server_container.py [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.verifier_server_process import (  # noqa: E402
    free_port,
    run_server_container,
    wait_healthy,
    write_score_lines,
)


def score(port: int, token: Path, lines: Path) -> list[str]:
    out = Path(tempfile.mkdtemp()) / "scored.jsonl"
    subprocess.run([str(Path(sys.executable).parent / "restem"), "score", str(lines),
                    "--dataset", "humaneval", "--server", f"127.0.0.1:{port}",
                    "--token-file", str(token), "-o", str(out)], check=True,
                   capture_output=True)
    return [json.loads(line)["verdict"] for line in out.read_text().splitlines()]


def host_round(token: Path, workers: int, lines: Path) -> tuple[float, list[str]]:
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "verifier_server.server", "--port", str(port), "--sandbox",
         "docker", "--sandbox-workers", str(workers), "--token-file", str(token)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seconds = wait_healthy(port, started)
        return seconds, score(port, token, lines)
    finally:
        process.terminate()
        process.wait(timeout=120)


def container_round(image: str, token: Path, workers: int, lines: Path
                    ) -> tuple[float, list[str]]:
    port = free_port()
    started = time.monotonic()
    name = run_server_container(image, port, token, workers)
    try:
        seconds = wait_healthy(port, started)
        return seconds, score(port, token, lines)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def size_mb(image: str) -> float:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                         capture_output=True, text=True, check=True)
    return int(out.stdout) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--version", default="0.1.0")
    args = parser.parse_args()
    server, sandbox = f"restem-verifier:{args.version}", f"restem-sandbox:{args.version}"
    for image in (server, sandbox):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
            sys.exit(f"{image} is missing: run deploy/build-images.sh")

    work = Path(tempfile.mkdtemp())
    token = work / "token"
    token.write_text("bench-token-0123456789abcdef\n")
    token.chmod(0o644)
    lines = write_score_lines(work)
    host, container, agree = [], [], True
    for _ in range(args.rounds):
        seconds, host_verdicts = host_round(token, args.workers, lines)
        host.append(seconds)
        seconds, container_verdicts = container_round(server, token, args.workers, lines)
        container.append(seconds)
        agree &= host_verdicts == container_verdicts

    print(f"# bench/server_container.py --rounds {args.rounds} --workers {args.workers}")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, docker sandbox backend")
    print("| server | median s to SERVING | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for label, values in (("host process", host), ("container", container)):
        print(f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} | "
              f"{max(values):.2f} |")
    print(f"ratio container/host: {statistics.median(container) / statistics.median(host):.2f}")
    print(f"verdicts agree: {agree} ({', '.join(host_verdicts)})")
    print(f"image sizes: {server} {size_mb(server):.0f} MB, {sandbox} {size_mb(sandbox):.0f} MB")


if __name__ == "__main__":
    main()
