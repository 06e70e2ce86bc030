"""The verifier service end to end: a real `restem serve` subprocess on loopback and the
real client. Round trips for every task kind and verdict, auth, TLS, bad input, faults
(a killed sandbox container, a killed and restarted server, a client that leaves), and a
graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evals.checks import (
    AssertTests,
    CallTests,
    CodeCheck,
    ExactCheck,
    MathCheck,
    StdioTests,
    Verdict,
)
from restem_client.client import AsyncVerifierClient, Tls, VerifierClient
from restem_proto.v1 import verifier_pb2 as pb
from restem_proto.v1 import verifier_pb2_grpc as pb_grpc
from tests.verifier_server_process import ServerProcess, free_port
from verifier_server.wire import to_request

V = pb.Verdict.Name
SLOW = "import time\ntime.sleep(float(input()))\nprint('done')"


def slow(seconds: str, request_id: str = "", *, timeout_s: float = 0.0) -> pb.VerifyRequest:
    """A program that sleeps `seconds` (its stdin), then passes."""
    return to_request(CodeCheck(SLOW, StdioTests(((seconds, "done\n"),)), timeout_s=timeout_s),
                      request_id=request_id)


def math_pb(completion: str, gold: str, request_id: str = "") -> pb.VerifyRequest:
    return to_request(MathCheck(completion, gold), request_id=request_id)


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--metrics-port", str(free_port())) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server):
    with VerifierClient(server.target) as c:
        yield c


NOTHING = StdioTests((("", ""),))
ONE_TWO = StdioTests((("1\n", "2\n"),))
ADD = "def add(a, b):\n    return a + b"
CASES = [  # check records, and the verdict each gets
    (MathCheck("so $\\boxed{\\frac{1}{2}}$", "0.5"), "PASS"),
    (MathCheck("so $\\boxed{3}$", "4"), "FAIL"),
    (MathCheck("We add the two numbers, then we carry the one over,\n"
               "and then I ran out of time before finishing.", "4"), "NO_ANSWER"),
    (MathCheck("#### 72", "72", "gsm8k"), "PASS"),
    (ExactCheck("Let's think. So the answer is (B).", "(B)"), "PASS"),
    (ExactCheck("So the answer is valid.", "invalid"), "FAIL"),
    (ExactCheck("no idea", "True"), "NO_ANSWER"),
    (CodeCheck("print(int(input()) + 1)", ONE_TWO), "PASS"),
    (CodeCheck("print(0)", ONE_TWO), "FAIL"),
    (CodeCheck("print(", ONE_TWO), "COMPILE_ERROR"),
    (CodeCheck("raise SystemExit(3)", NOTHING), "RUNTIME_ERROR"),
    (CodeCheck("while True: pass", NOTHING, cpu_s=0.5), "TIMEOUT"),
    (CodeCheck("x = bytearray(2**34)", NOTHING), "MEMORY_LIMIT"),
    (CodeCheck("while True: print('x' * 999)", NOTHING), "OUTPUT_LIMIT"),
    (CodeCheck(ADD, CallTests("add", (([1, 2], 3),))), "PASS"),
    (CodeCheck(ADD, AssertTests("def check(candidate):\n    assert candidate(1, 2) == 3\n",
                                "add")), "PASS"),
    (MathCheck("1", ""), "INVALID_REQUEST"),  # an empty gold: the verifier refuses it
]


def test_round_trips_every_kind_and_verdict(client: VerifierClient) -> None:
    requests = [to_request(check) for check, _ in CASES]
    for request, (_, expected) in zip(requests, CASES, strict=True):
        if expected != "INVALID_REQUEST":
            assert V(client.verify(request).verdict) == expected, request
    streamed = client.verify_many(requests)
    assert [V(r.verdict) for r in streamed] == [e for _, e in CASES]
    first = streamed[0]
    assert first.reward == 1.0 and first.extracted == "\\frac{1}{2}" and first.canonical
    assert first.rule == "boxed" and first.elapsed_ms > 0
    code = streamed[7]
    assert code.tests[0].passed and code.tests[0].stdout == "2\n"
    assert "math.gold" in streamed[-1].message


def test_stream_keeps_order_and_ids(client: VerifierClient) -> None:
    requests = [math_pb(f"\\boxed{{{i}}}", str(i % 3), request_id=f"q{i}") for i in range(500)]
    requests += [slow("0.05", request_id=f"c{i}") for i in range(8)]
    out = client.verify_many(requests)
    assert [r.request_id for r in out] == [r.request_id for r in requests]
    assert [r.verdict == pb.PASS for r in out[:500]] == [i == i % 3 for i in range(500)]
    assert all(r.verdict == pb.PASS for r in out[500:])


def test_plain_verify_stream_answers_each_request_once(server) -> None:
    """VerifyStream, one request per message (what grpcurl or another language would use)."""
    requests = [math_pb(f"\\boxed{{{i}}}", "3", request_id=f"s{i}") for i in range(40)]
    requests.append(slow("0.3", request_id="slow"))
    requests.append(math_pb("\\boxed{3}", "3", request_id="last"))
    channel = grpc.insecure_channel(server.target)
    answers = list(pb_grpc.VerifierStub(channel).VerifyStream(iter(requests)))
    channel.close()
    ids = [a.request_id for a in answers]
    assert sorted(ids) == sorted(r.request_id for r in requests)
    assert ids.index("last") < ids.index("slow")  # out of order: done first, sent first
    assert {a.request_id for a in answers if a.verdict == pb.PASS} == {"s3", "slow", "last"}


def test_async_client(server) -> None:
    import asyncio

    async def go():
        c = AsyncVerifierClient(server.target)
        try:
            (one,) = await c.check_many([MathCheck("\\boxed{7}", "7")])
            many = await c.check_many([MathCheck(str(i), str(i), extract=False)
                                       for i in range(50)] + [MathCheck("\\boxed{7}", "8")])
            return one, many
        finally:
            await c.close()

    one, many = asyncio.run(go())
    assert one.verdict == Verdict.PASS and one.extracted == "7" and one.rule == "boxed"
    assert [r.verdict for r in many] == [Verdict.PASS] * 50 + [Verdict.FAIL]


def test_info_health_reflection_metrics(server, client: VerifierClient) -> None:
    info = client.info()
    assert info.version and info.sandbox_backends == ("namespace",) and info.max_queue == 4096
    channel = grpc.insecure_channel(server.target)
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in listing for s in r.list_services_response.service}
    assert "restem.verifier.v1.Verifier" in names and "grpc.health.v1.Health" in names
    channel.close()
    metrics_port = int(server.process.args[server.process.args.index("--metrics-port") + 1])
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    assert 'restem_verify_requests_total{kind="math",verdict="PASS"}' in text
    assert "restem_verify_latency_seconds_bucket" in text and "restem_queue_depth" in text
    assert "restem_sandbox_busy" in text


def test_an_empty_program_is_answered_no_answer(client: VerifierClient) -> None:
    """A model that wrote no code gave a wrong answer, on the unary call as in a batch."""
    request = to_request(CodeCheck("  \n", StdioTests((("", "1\n"),))))
    assert client.verify(request).verdict == pb.NO_ANSWER
    assert client.verify_many([request])[0].verdict == pb.NO_ANSWER


def test_malformed_unary_requests_name_the_field(client: VerifierClient) -> None:
    bad = [
        (pb.VerifyRequest(), "task"),
        (pb.VerifyRequest(timeout_s=-1, math=pb.MathTask(gold="1")), "timeout_s"),
        (pb.VerifyRequest(code=pb.CodeTask(program="")), "code.tests"),
        (pb.VerifyRequest(code=pb.CodeTask(program="x")), "code.tests"),
        (to_request(CodeCheck("x", CallTests("f", (([1], 1),)))), None),
    ]
    broken = bad[-1][0]
    broken.code.call.cases[0].args_json = "{1"
    bad[-1] = (broken, "code.call.cases[0].args_json")
    for request, field in bad:
        with pytest.raises(grpc.RpcError) as info:
            client.verify(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in info.value.details()


requests_strategy = st.builds(
    pb.VerifyRequest,
    request_id=st.text(max_size=8),
    timeout_s=st.floats(-5, 700, allow_nan=False),
    math=st.builds(pb.MathTask, completion=st.text(max_size=40), gold=st.text(max_size=10),
                   extract=st.booleans(), mode=st.integers(0, 2)),
) | st.builds(
    pb.VerifyRequest,
    exact=st.builds(pb.ExactTask, completion=st.text(max_size=40), target=st.text(max_size=8),
                    answer_format=st.sampled_from(["", "multiple_choice", "x"]),
                    extract=st.booleans()),
) | st.builds(
    pb.VerifyRequest,
    code=st.builds(
        pb.CodeTask, program=st.sampled_from(["", "print(1)", "def f(*a): return a"]),
        call=st.builds(pb.CallTests, fn_name=st.text(max_size=6), cases=st.lists(
            st.builds(pb.CallCase, args_json=st.text(max_size=8),
                      expected_json=st.text(max_size=8)), max_size=2)),
        limits=st.builds(pb.Limits, cpu_time_s=st.floats(-1, 2, allow_nan=False),
                         max_processes=st.integers(-1, 100)),
    ),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests_strategy)
def test_generated_requests_never_crash_the_server(client: VerifierClient, request) -> None:
    (response,) = client.verify_many([request])
    assert response.verdict != pb.VERDICT_UNSPECIFIED
    assert client.info().version


def test_oversized_message_is_refused_cleanly(server, client: VerifierClient) -> None:
    huge = math_pb("x" * (65 * 2**20), "1")
    with pytest.raises(grpc.RpcError) as info:
        client.verify(huge)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.verify(math_pb("\\boxed{1}", "1")).verdict == pb.PASS


def test_refuses_to_expose_itself_without_protection() -> None:
    restem = Path(sys.executable).parent / "restem"
    done = subprocess.run([str(restem), "serve", "--host", "0.0.0.0", "--sandbox", "none"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--token-file or TLS" in done.stderr


def test_flags_come_from_the_environment_and_a_bad_value_is_named(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from verifier_server.server import build_parser, check_config

    monkeypatch.setenv("RESTEM_SANDBOX_WORKERS", "3")
    monkeypatch.setenv("RESTEM_INSECURE", "1")
    monkeypatch.setenv("RESTEM_SANDBOX", "none")
    args = build_parser().parse_args(["--sandbox-workers", "5"])
    assert (args.sandbox_workers, args.insecure, args.sandbox) == (5, True, "none")
    assert build_parser().parse_args([]).sandbox_workers == 3 and check_config(args) is None

    restem = Path(sys.executable).parent / "restem"
    env = {**os.environ, "RESTEM_SANDBOX": "dockr"}
    done = subprocess.run([str(restem), "serve"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 2 and "RESTEM_SANDBOX='dockr': expected one of" in done.stderr
    # Only `serve` reads them: another command is not stopped by a bad server variable.
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"task_id": "a", "completion": "\\boxed{2}", "gold": "2"}) + "\n")
    done = subprocess.run([str(restem), "score", str(source)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_without_a_sandbox_math_is_served_and_code_refused_with_the_reason(
        tmp_path: Path, sandbox: str) -> None:
    """No Docker engine (DOCKER_HOST names a socket nobody listens on): `auto` serves math and
    exact, warns once, and says why code is off; `none` says code is off by configuration."""
    dead = f"unix://{tmp_path}/docker.sock"
    expected = {"auto": f"code execution is off: no Docker engine reachable at {dead}; ",
                "none": "code execution is off by configuration (sandbox: none)"}[sandbox]
    with ServerProcess(sandbox=sandbox, env={"DOCKER_HOST": dead}) as proc, \
            VerifierClient(proc.target) as c:
        assert c.verify(math_pb("so $\\boxed{\\frac{1}{2}}$", "0.5")).verdict == pb.PASS
        print_one = to_request(CodeCheck("print(1)", StdioTests((("", "1\n"),))))
        refused = c.verify(print_one)
        assert V(refused.verdict) == "INVALID_REQUEST" and refused.message.startswith(expected)
        if sandbox == "auto":
            assert "RESTEM_SANDBOX (--sandbox) to namespace or none" in refused.message
        streamed = c.verify_many([to_request(ExactCheck("So the answer is (B).", "(B)")),
                                  print_one])
        assert [V(r.verdict) for r in streamed] == ["PASS", "INVALID_REQUEST"]
        info = c.info()
        assert list(info.sandbox_backends) == [] and info.code_off == refused.message
        lines = proc.output().splitlines()
        said = [line for line in lines if "code execution is off" in line]
        assert len(said) == 1 and said[0].endswith(f"{refused.message}; math and exact are served")
        assert "serving on" in lines[1] and "Traceback" not in proc.output()


def test_a_sandbox_asked_for_by_name_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    restem = Path(sys.executable).parent / "restem"
    dead = f"unix://{tmp_path}/docker.sock"
    env = {**os.environ, "DOCKER_HOST": dead, "RESTEM_SANDBOX": "docker"}
    done = subprocess.run([str(restem), "serve", "--port", "0"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        f"restem serve: the docker sandbox cannot start: no Docker engine reachable at {dead}; ")
    assert "RESTEM_SANDBOX (--sandbox) to namespace or none" in done.stderr


def test_bearer_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    with ServerProcess("--token-file", str(token), sandbox="none") as proc:
        request = math_pb("\\boxed{1}", "1")
        for wrong in (None, "nope"):
            with VerifierClient(proc.target, token=wrong, retries=0) as c, \
                    pytest.raises(grpc.RpcError) as info:
                c.verify(request)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with VerifierClient(proc.target, token=wrong, retries=0) as c, \
                    pytest.raises(grpc.RpcError) as info:
                c.verify_many([request])
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with VerifierClient(proc.target, token="s3cret-token") as c:
            assert c.verify(request).verdict == pb.PASS
            assert c.verify_many([request])[0].verdict == pb.PASS
        channel = grpc.insecure_channel(proc.target)  # probes need no token
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        channel.close()


def test_tls_with_a_self_signed_pair(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    with ServerProcess("--tls-cert", str(cert), "--tls-key", str(key), sandbox="none") as proc:
        with VerifierClient(proc.target, tls=Tls(ca=cert)) as c:
            assert c.verify(math_pb("\\boxed{2}", "2")).verdict == pb.PASS
        with VerifierClient(proc.target, retries=0) as plain, pytest.raises(grpc.RpcError):
            plain.verify(math_pb("\\boxed{2}", "2"), timeout_s=5)


@pytest.mark.docker
def test_sandbox_container_killed_mid_batch() -> None:
    with ServerProcess(sandbox="docker") as proc, VerifierClient(proc.target) as c:
        requests = [slow("0.3", request_id=str(i)) for i in range(24)]
        result: list = []
        worker = threading.Thread(target=lambda: result.extend(c.verify_many(requests)))
        worker.start()
        time.sleep(1.0)
        label = f"label=restem.owner={proc.process.pid}"
        names = subprocess.run(["docker", "ps", "-q", "--filter", label], capture_output=True,
                               text=True, check=True).stdout.split()
        assert names
        subprocess.run(["docker", "kill", *names], capture_output=True, check=True)
        worker.join(120)
        assert [r.request_id for r in result] == [str(i) for i in range(24)]
        verdicts = Counter(V(r.verdict) for r in result)
        assert set(verdicts) <= {"PASS", "SANDBOX_ERROR"} and verdicts["PASS"] >= 20, verdicts


def test_server_killed_and_restarted_mid_batch() -> None:
    port = free_port()
    first = ServerProcess(port=port).wait_serving()
    requests = [slow("0.05", request_id=f"r{i}") for i in range(60)]
    requests += [math_pb(f"\\boxed{{{i}}}", str(i), request_id=f"m{i}") for i in range(300)]
    result: list = []
    with VerifierClient(f"127.0.0.1:{port}", max_in_flight=8, backoff_s=0.5) as c:
        worker = threading.Thread(target=lambda: result.extend(c.verify_many(requests)))
        worker.start()
        time.sleep(1.0)
        first.stop(signal.SIGKILL)
        second = ServerProcess(port=port).wait_serving()
        worker.join(180)
        second.stop()
    assert [r.request_id for r in result] == [r.request_id for r in requests]
    assert all(r.verdict == pb.PASS for r in result)


def test_client_that_leaves_leaves_no_work_running(server, client: VerifierClient) -> None:
    channel = grpc.insecure_channel(server.target)
    stub = pb_grpc.VerifierStub(channel)
    requests = [slow("0.5", request_id=str(i)) for i in range(40)]
    call = stub.VerifyStream(iter(requests))
    next(call)  # work is running
    call.cancel()
    channel.close()
    deadline = time.monotonic() + 20
    while client.info().in_flight and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.info().in_flight == 0


def test_sigterm_finishes_in_flight_work() -> None:
    proc = ServerProcess().wait_serving()
    with VerifierClient(proc.target) as c:
        result: list = []
        requests = [slow("1.5") for _ in range(2)]
        worker = threading.Thread(target=lambda: result.extend(c.verify_many(requests)))
        worker.start()
        time.sleep(0.8)
        proc.process.send_signal(signal.SIGTERM)
        channel = grpc.insecure_channel(proc.target)
        statuses = set()
        for _ in range(20):
            try:
                statuses.add(health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1).status)
            except grpc.RpcError:
                break
            time.sleep(0.05)
        channel.close()
        worker.join(60)
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    assert [r.verdict for r in result] == [pb.PASS, pb.PASS]
    assert proc.process.wait(60) == 0


def test_deadlines_reach_the_sandbox(client: VerifierClient) -> None:
    sleeper = slow("30", timeout_s=1.0)
    assert sleeper.timeout_s == 1.0  # the check's own budget travels on the request
    start = time.monotonic()
    assert client.verify(sleeper).verdict == pb.TIMEOUT
    assert time.monotonic() - start < 6  # not the 13 s default wall limit
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        client.verify(slow("30"), timeout_s=1.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 10
    while client.info().in_flight and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.info().in_flight == 0 and time.monotonic() - start < 8


def test_full_queue_answers_resource_exhausted() -> None:
    with ServerProcess("--max-queue", "2") as proc:
        request = slow("1.0")
        codes: list = []

        def one() -> None:
            with VerifierClient(proc.target, retries=0) as c:
                try:
                    codes.append(V(c.verify(request).verdict))
                except grpc.RpcError as exc:
                    codes.append(exc.code())

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and "PASS" in codes
        with VerifierClient(proc.target) as patient:  # retries with backoff get through
            assert all(r.verdict == pb.PASS for r in patient.verify_many([request] * 4))


def test_round_robin_over_replicas() -> None:
    ports = [free_port(), free_port()]
    servers = [ServerProcess("--metrics-port", str(free_port()), port=p, sandbox="none")
               for p in ports]
    try:
        for s in servers:
            s.wait_serving()
        with VerifierClient([f"127.0.0.1:{p}" for p in ports]) as c:
            for i in range(20):
                assert c.verify(math_pb(f"\\boxed{{{i}}}", str(i))).verdict == pb.PASS
        for s in servers:
            metrics_port = int(s.process.args[s.process.args.index("--metrics-port") + 1])
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
            assert b'restem_verify_requests_total{kind="math",verdict="PASS"}' in text
    finally:
        for s in servers:
            s.stop()


def test_mutual_tls(tmp_path: Path) -> None:
    pairs = {}
    for name in ("server", "client"):
        key, cert = tmp_path / f"{name}-key.pem", tmp_path / f"{name}.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        pairs[name] = (key, cert)
    (skey, scert), (ckey, ccert) = pairs["server"], pairs["client"]
    with ServerProcess("--tls-cert", str(scert), "--tls-key", str(skey),
                       "--client-ca", str(ccert), sandbox="none") as proc:
        with VerifierClient(proc.target, tls=Tls(ca=scert, cert=ccert, key=ckey)) as c:
            assert c.verify(math_pb("\\boxed{5}", "5")).verdict == pb.PASS
        with VerifierClient(proc.target, tls=Tls(ca=scert), retries=0) as anonymous, \
                pytest.raises(grpc.RpcError):
            anonymous.verify(math_pb("\\boxed{5}", "5"), timeout_s=5)


def test_restem_score_through_the_server(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok")
    lines = tmp_path / "gen.jsonl"
    lines.write_text("\n".join([
        '{"task_id": "a", "completion": "so \\\\boxed{2}", "gold": "2"}',
        '{"task_id": "b", "completion": "so \\\\boxed{3}", "gold": "2"}',
        '{"task_id": "c", "completion": "#### 7", "gold": "7", "mode": "gsm8k"}',
    ]) + "\n")
    restem = Path(sys.executable).parent / "restem"
    with ServerProcess("--token-file", str(token), sandbox="none") as proc:
        done = subprocess.run([str(restem), "score", str(lines), "--server", proc.target,
                               "--token-file", str(token)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        results = [json.loads(x) for x in (tmp_path / "gen_results.jsonl").read_text().splitlines()]
        assert [r["verdict"] for r in results] == ["PASS", "FAIL", "PASS"]
        denied = subprocess.run([str(restem), "score", str(lines), "--server", proc.target],
                                capture_output=True, text=True, timeout=120)
        assert denied.returncode != 0 and "UNAUTHENTICATED" in denied.stderr
        # the finished results were not clobbered by the failed run
        assert (tmp_path / "gen_results.jsonl").read_text().count("\n") == 3


@pytest.mark.namespace
def test_local_verifier_has_the_same_interface_and_answers() -> None:
    from restem_client.local_verifier import LocalVerifier

    with LocalVerifier(sandbox="namespace", sandbox_workers=2) as local:
        results = local.check_many([check for check, _ in CASES])
        assert [r.verdict for r in results] == [Verdict(e) for _, e in CASES]
        first = results[0]
        assert first.extracted == "\\frac{1}{2}" and first.rule == "boxed"
        assert results[7].tests[0].passed and results[7].tests[0].stdout == "2\n"
        assert "math.gold" in results[-1].message
        assert local.info().sandbox_backends == ("namespace",)
