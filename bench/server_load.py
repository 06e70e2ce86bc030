"""The verifier over gRPC against the same verifier in-process, on the same requests.

Requests (20,000 by default, realistic sizes): 90% math, the MATH-500 reference solutions
checked against their own answer and against the next problem's answer; 10% code, the
HumanEval canonical solutions and one mutated solution per problem (tests/humaneval_cases.py).

- server: `restem serve` as a real subprocess on loopback; a separate client process streams
  every request over one VerifyBatches call (as VerifierClient does: up to 64 requests per
  message) with at most --concurrency in flight, and records when each request went out and
  when its answer came back.
- in-process: `LocalVerifier.check_many` on the same checks, as records (nothing encoded),
  --concurrency at a time.

Both use the same sandbox backend and worker count. Prints throughput, p50/p99 latency, lost
and duplicated answers (must be 0), whether every verdict agrees, and the ratio
server/in-process (target: at least 0.8).

    .venv/bin/python bench/server_load.py [--requests 20000] [--concurrency 256]
        [--sandbox docker|namespace] [--workers N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evals.checks import AssertTests, Check, CodeCheck, MathCheck  # noqa: E402
from restem_proto.v1 import verifier_pb2 as pb  # noqa: E402
from verifier_server.wire import to_request, verdict_to_pb  # noqa: E402


def build_checks(count: int, data: Path) -> list[Check]:
    from tests.humaneval_cases import programs

    rows = [json.loads(line) for line in (data / "math" / "math500_test.jsonl").open()]
    math = []
    for i, row in enumerate(rows):
        math.append((row["solution"], row["answer"]))
        math.append((row["solution"], rows[(i + 1) % len(rows)]["answer"]))
    code = []
    for p in programs():
        pr = p.problem
        code.append(CodeCheck(p.source, AssertTests(pr["test"], pr["entry_point"], pr["prompt"])))
    return [code[(i // 10) % len(code)] if i % 10 == 9 else MathCheck(*math[i % len(math)])
            for i in range(count)]


def client_process(target: str, requests_file: Path, concurrency: int) -> None:
    """Runs in its own process: stream the requests, print timings as JSON."""
    import grpc

    from restem_proto.v1 import verifier_pb2_grpc as pb_grpc

    requests = pickle.loads(requests_file.read_bytes())
    requests = [pb.VerifyRequest.FromString(r) for r in requests]
    sent: dict[str, float] = {}
    answers: dict[str, tuple[float, int]] = {}
    duplicates = 0
    slots = threading.Semaphore(concurrency)
    channel = grpc.insecure_channel(target, [("grpc.max_receive_message_length", 2**26)])
    stub = pb_grpc.VerifierStub(channel)

    def outgoing():  # as the client library does: up to 64 free slots per message
        position = 0
        while position < len(requests):
            slots.acquire()
            group = [requests[position]]
            position += 1
            while position < len(requests) and len(group) < 64 and slots.acquire(blocking=False):
                group.append(requests[position])
                position += 1
            now = time.perf_counter()
            for r in group:
                sent[r.request_id] = now
            yield pb.VerifyBatch(requests=group)

    start = time.perf_counter()
    for result in stub.VerifyBatches(outgoing(), wait_for_ready=True):
        slots.release(len(result.responses))
        now = time.perf_counter()
        for response in result.responses:
            if response.request_id in answers:
                duplicates += 1
            answers[response.request_id] = (now, response.verdict)
    seconds = time.perf_counter() - start
    latencies = [answers[k][0] - sent[k] for k in answers]
    print(json.dumps({
        "seconds": seconds, "latencies": latencies, "duplicates": duplicates,
        "verdicts": {k: v for k, (_, v) in answers.items()},
    }))


def in_process(checks: list[Check], sandbox: str, workers: int, concurrency: int):
    from restem_client.local_verifier import LocalVerifier
    from sandbox.asserts import clear_caches

    clear_caches()  # the server process starts cold; so does every in-process round
    verifier = LocalVerifier(sandbox=sandbox, sandbox_workers=workers)
    verifier.check_many(checks[9:10])  # start the sandbox pool before timing
    latencies, verdicts = [], {}
    start = time.perf_counter()
    for i in range(0, len(checks), concurrency):
        chunk = checks[i : i + concurrency]
        t0 = time.perf_counter()
        results = verifier.check_many(chunk)
        t1 = time.perf_counter()
        latencies += [t1 - t0] * len(chunk)
        verdicts.update({str(i + j): verdict_to_pb(r.verdict) for j, r in enumerate(results)})
    seconds = time.perf_counter() - start
    verifier.close()
    return seconds, latencies, verdicts


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_process(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--sandbox", default="docker", choices=["docker", "namespace"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from tests.verifier_server_process import ServerProcess

    checks = build_checks(args.requests, args.data)
    requests = [to_request(c, request_id=str(i)) for i, c in enumerate(checks)]
    kinds = {r.request_id: r.WhichOneof("task") for r in requests}
    print(f"# {platform.node()}: {os.cpu_count()} cores; {len(requests)} requests "
          f"({sum(k == 'code' for k in kinds.values())} code), concurrency {args.concurrency}, "
          f"sandbox {args.sandbox} x {args.workers}")
    print(f"# command: {' '.join(sys.argv)}")

    blob = REPO / "runs" / "server_load_requests.pickle"
    blob.parent.mkdir(exist_ok=True)
    blob.write_bytes(pickle.dumps([r.SerializeToString() for r in requests]))
    local_runs, remote_runs = [], []
    for _ in range(args.rounds):  # fresh verifiers (cold caches) on both paths every round
        local_runs.append(in_process(checks, args.sandbox, args.workers, args.concurrency))
        with ServerProcess(sandbox=args.sandbox, workers=args.workers) as server:
            done = subprocess.run(
                [sys.executable, __file__, "--client", server.target, str(blob),
                 str(args.concurrency)], capture_output=True, text=True, check=True,
            )
        remote_runs.append(json.loads(done.stdout))
    blob.unlink()
    median = len(local_runs) // 2
    local_s, local_lat, local_verdicts = sorted(local_runs, key=lambda r: r[0])[median]
    remote = sorted(remote_runs, key=lambda r: r["seconds"])[median]
    lost = max(len(requests) - len(r["verdicts"]) for r in remote_runs)
    duplicates = max(r["duplicates"] for r in remote_runs)
    agree = all(r["verdicts"].get(k) == v for r in remote_runs for k, v in local_verdicts.items())

    def row(name, seconds, latencies, lost="", dup=""):
        lat = sorted(latencies)
        p50, p99 = statistics.median(lat) * 1000, lat[int(0.99 * (len(lat) - 1))] * 1000
        return (f"| {name} | {len(requests) / seconds:.0f} | {p50:.1f} | {p99:.1f} | "
                f"{lost} | {dup} |")

    print()
    print("| path | requests/s | p50 ms | p99 ms | lost | duplicated |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(row("in-process LocalVerifier", local_s, local_lat))
    print(row("gRPC server (separate client process)", remote["seconds"], remote["latencies"],
              lost, duplicates))
    ratio = local_s / remote["seconds"]
    print(f"\nmedian of {args.rounds} rounds; ratio server/in-process throughput: {ratio:.2f} "
          f"(target >= 0.80); verdicts agree: {'yes' if agree else 'NO'}; lost and duplicated: "
          "worst round")


if __name__ == "__main__":
    main()
