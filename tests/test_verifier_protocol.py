"""One `Verifier` protocol, check records in and results out, two implementations: the same
assertions run against the in-process `LocalVerifier` and a `VerifierClient` (and its asyncio
face) over real gRPC on loopback to a real `restem serve` (code on the `local` sandbox
backend, for speed), call timeouts included. Around it: the one verdict vocabulary and its
wire mapping (records to protobuf and back, losing nothing), the check records (their own
validation, the scorer's lines, the results fields), the service's decoding and the core's
single validation, and the token file and log levels as the command line reports them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import MISSING, fields
from pathlib import Path

import grpc
import pytest

from evals.checks import (
    AssertTests,
    CallTests,
    CheckResult,
    CodeCheck,
    ExactCheck,
    InvalidCheck,
    MathCheck,
    StdioTests,
    TestOutcome,
    Verdict,
    VerifierInfo,
    parse_tests,
)
from evals.score import parse_line, result_fields
from restem_client.client import AsyncVerifierClient, VerifierClient
from restem_client.local_verifier import LocalVerifier
from restem_client.verifier import Verifier, VerifyTimeout
from restem_proto.v1 import verifier_pb2 as pb
from sandbox import CallTest, StdioTest
from sandbox.results import Status
from tests.verifier_server_process import ServerProcess, free_port
from verifier_server.core import NoAnswer, sandbox_verdict
from verifier_server.core import Verifier as Core
from verifier_server.service import decode
from verifier_server.token_file import TokenFileError, read_token
from verifier_server.wire import (
    from_request,
    info_from_pb,
    info_to_pb,
    to_request,
    to_response,
    to_result,
    verdict_from_pb,
    verdict_to_pb,
)

RESTEM = Path(sys.executable).parent / "restem"
SLOW = "import time\ntime.sleep(float(input()))\nprint('done')"
SLACK_S = 5.0  # a busy 2-core machine


class _AwaitedEachCall(Verifier):
    """AsyncVerifierClient driven through the protocol's calls, each awaited on an event
    loop of its own, so that the same assertions hold for the asyncio client."""

    def __init__(self, client: AsyncVerifierClient) -> None:
        self.client, self.loop = client, asyncio.new_event_loop()

    def check_many(self, checks, *, progress=False, timeout_s=None):
        return self.loop.run_until_complete(
            self.client.check_many(checks, progress=progress, timeout_s=timeout_s))

    def info(self):
        return self.loop.run_until_complete(self.client.info())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module", params=["local", "grpc", "grpc-asyncio"])
def verifier(request: pytest.FixtureRequest) -> Iterator[Verifier]:
    if request.param == "local":
        with LocalVerifier(sandbox="local", sandbox_workers=2) as local:
            yield local
    elif request.param == "grpc":
        with ServerProcess(sandbox="local", workers=2) as server, \
                VerifierClient(server.target) as client:
            yield client
    else:
        with ServerProcess(sandbox="local", workers=2) as server, \
                _AwaitedEachCall(AsyncVerifierClient(server.target)) as client:
            yield client


def test_check_many_answers_every_check_in_order(verifier: Verifier) -> None:
    results = verifier.check_many([
        MathCheck("so $\\boxed{\\frac{1}{2}}$", "0.5"),
        MathCheck("so \\boxed{3}", "4"),
        MathCheck("He has 12 in total.", "#### 12", mode="gsm8k"),
        ExactCheck("So the answer is (B).", "(B)"),
        ExactCheck("no idea", "True"),
        CodeCheck("print(int(input()) + 1)", StdioTests((("1\n", "2\n"),))),
        CodeCheck("def add(a, b):\n    return a + b", CallTests("add", (([1, 2], 3),))),
        CodeCheck("def add(a, b):\n    return a + b",
                  AssertTests("def check(candidate):\n    assert candidate(1, 2) == 3\n", "add")),
        CodeCheck("print(", StdioTests((("", ""),))),
        MathCheck("1", ""),
    ])
    assert [r.verdict for r in results] == [
        Verdict.PASS, Verdict.FAIL, Verdict.PASS, Verdict.PASS, Verdict.NO_ANSWER, Verdict.PASS,
        Verdict.PASS, Verdict.PASS, Verdict.COMPILE_ERROR, Verdict.INVALID_REQUEST]
    assert (results[0].extracted, results[0].rule, results[0].passed) == (
        "\\frac{1}{2}", "boxed", True)
    assert results[1] == CheckResult(Verdict.FAIL, extracted="3", canonical="3", rule="boxed")
    assert results[2].rule == "last_number" and results[4].extracted is None
    assert results[3].extracted == "(B)" and results[3].elapsed_ms > 0
    (test,) = results[5].tests
    assert (test.passed, test.verdict, test.stdout) == (True, Verdict.PASS, "2\n")
    assert not results[7].forgeable and results[8].tests[0].verdict is Verdict.COMPILE_ERROR
    assert "math.gold" in results[9].message


def test_info_names_the_backend(verifier: Verifier) -> None:
    info = verifier.info()
    assert info.sandbox_backends == ("local",) and info.math_workers >= 1 and info.version
    assert info.cpu_s == 4.0 and info.memory_mb == 1024 and info.max_processes == 32


def test_a_call_timeout_raises_verify_timeout(verifier: Verifier) -> None:
    # Sleepers that differ: the sandbox shares one run among identical checks in flight.
    def sleeper(seconds: str, **options) -> CodeCheck:
        return CodeCheck(SLOW, StdioTests(((seconds, "done\n"),)), **options)

    for checks in ([sleeper("30")], [MathCheck("\\boxed{1}", "1"), sleeper("31")]):
        start = time.monotonic()
        with pytest.raises(VerifyTimeout) as info:
            verifier.check_many(checks, timeout_s=1.0)
        assert 1.0 <= time.monotonic() - start < 1.0 + SLACK_S
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, grpc.RpcError)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # a check's own timeout_s bounds that check: an answer, TIMEOUT, and the others answered
    start = time.monotonic()
    bounded, quick = verifier.check_many([sleeper("32", timeout_s=1.0),
                                          MathCheck("\\boxed{1}", "1")])
    assert (bounded.verdict, quick.verdict) == (Verdict.TIMEOUT, Verdict.PASS)
    assert time.monotonic() - start < 1.0 + SLACK_S


def test_a_call_timeout_covers_the_wait_for_a_server_that_is_not_up() -> None:
    # The client would wait up to connect_timeout_s (30 s) for a server to come up; the
    # call's own timeout_s bounds the whole call, that wait included, sync and async alike,
    # on records and on the wire.
    target = f"127.0.0.1:{free_port()}"
    check = MathCheck("\\boxed{1}", "1")

    def timed(call) -> float:
        start = time.monotonic()
        with pytest.raises(VerifyTimeout):
            call()
        return time.monotonic() - start

    with VerifierClient(target, connect_timeout_s=30) as client:
        waits = [timed(lambda: client.check_many([check], timeout_s=1.0)),
                 timed(lambda: client.verify(to_request(check), timeout_s=1.0))]

    async def call_async() -> None:
        client = AsyncVerifierClient(target, connect_timeout_s=30)
        try:
            await client.check_many([check], timeout_s=1.0)
        finally:
            await client.close()

    waits.append(timed(lambda: asyncio.run(call_async())))
    assert all(1.0 <= w < 1.0 + SLACK_S for w in waits), waits


def test_verdicts_are_the_wire_names_and_the_sandbox_statuses() -> None:
    wire = [value.name for value in pb.Verdict.DESCRIPTOR.values
            if value.name != "VERDICT_UNSPECIFIED"]
    assert [v.value for v in Verdict] == wire
    for status in Status:
        assert sandbox_verdict(status) is Verdict(status.value)
    # the sandbox (standard library only) keeps its own list of compare profiles
    from evals.checks import PROFILES
    from sandbox.compare import PROFILES as SANDBOX_PROFILES

    assert PROFILES == SANDBOX_PROFILES


def test_the_wire_mapping_goes_both_ways_and_fails_loudly() -> None:
    for verdict in Verdict:
        assert verdict_to_pb(verdict) == pb.Verdict.Value(verdict.value)
        assert verdict_from_pb(verdict_to_pb(verdict)) is verdict
    with pytest.raises(ValueError, match="wire verdict 0 is not a Verdict"):
        verdict_from_pb(pb.VERDICT_UNSPECIFIED)
    with pytest.raises(ValueError, match="wire verdict 99 is not a Verdict"):
        verdict_from_pb(99)
    with pytest.raises(ValueError, match="'LOST' is not a verdict the wire knows"):
        verdict_to_pb("LOST")


def test_records_become_requests_and_responses_results() -> None:
    request = to_request(MathCheck("0.5", "\\frac12", mode="gsm8k", extract=False,
                                   timeout_s=2.0), request_id="r")
    assert (request.request_id, request.timeout_s) == ("r", 2.0)
    assert request.math == pb.MathTask(completion="0.5", gold="\\frac12", extract=False,
                                       mode=pb.MATH_MODE_GSM8K)
    code = to_request(CodeCheck("p", AssertTests("t", "f", "prompt"), cpu_s=1.5, memory_mb=64,
                                profile="human_eval", run_all=True)).code
    assert code.asserts == pb.AssertTests(test_code="t", entry_point="f", prompt="prompt")
    assert (code.limits.cpu_time_s, code.limits.memory_bytes) == (1.5, 64 * 2**20)
    assert code.profile == pb.COMPARE_PROFILE_HUMAN_EVAL and code.run_all_tests
    call = to_request(CodeCheck("p", CallTests("f", (([1, [2]], {"a": 3}),)))).code.call
    assert (call.cases[0].args_json, call.cases[0].expected_json) == ('[1, [2]]', '{"a": 3}')
    with pytest.raises(TypeError, match="not a check record: dict"):
        to_request({"kind": "math"})  # type: ignore[arg-type]
    response = pb.VerifyResponse(verdict=pb.FAIL, extracted="", canonical="7", message="m")
    assert to_result(response) == CheckResult(Verdict.FAIL, None, "7", None, "m")


ROUND_TRIP = [
    MathCheck("so \\boxed{1}", "1"),
    MathCheck("0.5", "1/2", mode="gsm8k", extract=False, timeout_s=2.5),
    ExactCheck("So the answer is (B).", "(B)", answer_format="multiple_choice", extract=False,
               timeout_s=1.0),
    CodeCheck("print(1)", StdioTests((("", "1\n"), ("x\n", "é\n")))),
    CodeCheck("p", CallTests("f", (([1, [2.5, None]], {"a": [True]}), ([], "s")))),
    CodeCheck("p", AssertTests("def check(c): pass", "f", "prompt"), cpu_s=1.5, memory_mb=64,
              profile="human_eval", run_all=True, wall_s=7.0, output_bytes=1000,
              file_bytes=2000, timeout_s=9.0),
]


def test_the_round_trip_sets_every_field_of_every_record() -> None:
    """A field added to a record must be added here too, set away from its default, or the
    round trip below would not see a translator that forgets it."""
    for kind in (MathCheck, ExactCheck, CodeCheck):
        defaults = {f.name: f.default for f in fields(kind) if f.default is not MISSING}
        assert any(all(getattr(c, name) != value for name, value in defaults.items())
                   for c in ROUND_TRIP if type(c) is kind), kind.__name__


@pytest.mark.parametrize("check", ROUND_TRIP, ids=lambda c: type(c).__name__)
def test_every_record_field_crosses_the_wire_and_back(check) -> None:
    """The service reads back exactly the record the client sent: a field that one side
    forgets fails here."""
    wire = pb.VerifyRequest.FromString(to_request(check, request_id="r").SerializeToString())
    assert from_request(wire) == check


def test_every_info_field_crosses_the_wire_and_back() -> None:
    info = VerifierInfo("1.2.3", ("docker",), "", 4, 2, cpu_s=4.0, wall_s=13.0, memory_mb=1024,
                        max_processes=32, output_bytes=5, file_bytes=6, max_queue=7,
                        in_flight=8)
    assert info_from_pb(pb.ServerInfo.FromString(info_to_pb(info).SerializeToString())) == info


def test_every_result_field_crosses_the_wire_and_back() -> None:
    result = CheckResult(
        Verdict.RUNTIME_ERROR, extracted="x", canonical="y", rule="boxed", message="m",
        tests=(TestOutcome(True, Verdict.PASS, 0, "1\n", "", 0.5, 0.75, ""),
               TestOutcome(False, Verdict.RUNTIME_ERROR, 1, "", "Traceback", 0.25, 0.5, "why")),
        forgeable=True, elapsed_ms=12.5)
    response = pb.VerifyResponse.FromString(to_response(result, "r").SerializeToString())
    assert (response.request_id, response.reward) == ("r", 0.0)
    back = to_result(response)
    assert back == result and back.elapsed_ms == 12.5
    assert to_response(CheckResult(Verdict.PASS)).reward == 1.0


@pytest.mark.parametrize(("build", "message"), [
    (lambda: MathCheck("x", 1), "field 'gold' must be a string"),
    (lambda: MathCheck("x", "1", mode="latex"), "field 'mode' must be 'math' or 'gsm8k', not "
     "'latex'"),
    (lambda: MathCheck("x", "1", extract="yes"), "field 'extract' must be true or false"),
    (lambda: ExactCheck("x", "y", answer_format="mc"), "field 'answer_format' must be"),
    (lambda: CodeCheck("p", {"stdio": {}}), "field 'tests' must be StdioTests, CallTests"),
    (lambda: CodeCheck("p", StdioTests(()), cpu_s=-1), "field 'cpu_s' must be a number"),
    (lambda: parse_tests({"stdin": {}}), "field 'tests' must be an object with one of"),
    (lambda: parse_tests({"call": {"cases": []}}), "missing field 'tests.call.fn_name'"),
    (lambda: parse_tests({"stdio": {"cases": [["1"]]}}),
     "field 'tests.stdio.cases' must be a list of [input, expected]"),
    (lambda: parse_tests({"stdio": {"cases": [["1", 2]]}}),
     "field 'tests.stdio.cases[0][1]' must be a string"),
    (lambda: parse_tests({"call": {"fn_name": "f", "cases": [[1, 2]]}}),
     "field 'tests.call.cases[0][0]' must be a list of arguments"),
    # test records built in code check their cases the same way
    (lambda: CodeCheck("p", StdioTests(((3, "1\n"),))),
     "field 'tests.stdio.cases[0][0]' must be a string"),
    (lambda: CallTests("f", (("ab", 1),)), "field 'tests.call.cases[0][0]' must be a list"),
    (lambda: AssertTests("check(f)", None), "field 'tests.asserts.entry_point' must be a"),
])
def test_a_record_names_its_wrong_field(build, message: str) -> None:
    with pytest.raises(InvalidCheck) as info:
        build()
    assert str(info.value).startswith(message)


def test_score_lines_become_records_and_results_keep_their_fields() -> None:
    record, check = parse_line(json.dumps({"task_id": "a", "solution": "print(1)", "tests": {
        "call": {"fn_name": "f", "cases": [[[1, 2], 3]]}}}))
    assert record["task_id"] == "a"
    assert check == CodeCheck("print(1)", CallTests("f", (([1, 2], 3),)))
    assert parse_line('{"task_id": 1, "completion": "x", "target": "(A)"}')[1] == \
        ExactCheck("x", "(A)")
    with pytest.raises(InvalidCheck, match="field 'solution' must be a string"):
        parse_line('{"task_id": 1, "solution": 3, "gold": "1"}')
    fields = result_fields(CheckResult(Verdict.PASS, "1/2", "1/2", "boxed"))
    assert list(fields) == ["passed", "verdict", "extracted", "canonical", "rule"]
    assert fields["passed"] is True and type(fields["verdict"]) is str
    assert result_fields(CheckResult(Verdict.SANDBOX_ERROR, message="lost"))["message"] == "lost"


def test_the_service_decodes_once_and_the_core_hands_the_tests_on() -> None:
    core = Core(None, math_workers=1)
    try:
        job = core.validate(decode(to_request(CodeCheck("print(2)", StdioTests(
            (("1\n", "2\n"),)))), max_processes=32))
        assert job.tests == (StdioTest("1\n", "2\n"),)
        job = core.validate(CodeCheck("def f(x): return x", CallTests("f", (([1], 1),))))
        assert job.tests == (CallTest("f", [1], 1),)
        assert core.validate(MathCheck("x", "1")).tests == ()
        with pytest.raises(InvalidCheck, match=r"code\.memory_mb: this verifier allows at most"):
            core.validate(CodeCheck("p", StdioTests((("", ""),)), memory_mb=1 << 20))
    finally:
        core.close()
    with pytest.raises(InvalidCheck, match=r"math\.mode: unknown value 7"):
        decode(pb.VerifyRequest(math=pb.MathTask(completion="x", gold="1", mode=7)), 32)
    with pytest.raises(InvalidCheck, match=r"code\.profile: unknown value 9"):
        decode(pb.VerifyRequest(code=pb.CodeTask(
            program="p", profile=9, stdio=pb.StdioTests(cases=[pb.StdioCase()]))), 32)
    with pytest.raises(InvalidCheck, match=r"code\.limits\.max_processes: this server allows"):
        decode(pb.VerifyRequest(code=pb.CodeTask(
            program="p", limits=pb.Limits(max_processes=33),
            stdio=pb.StdioTests(cases=[pb.StdioCase()]))), 32)


def test_a_bad_token_file_is_one_line_on_both_sides(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(TokenFileError, match="is empty"):
        read_token(empty)
    with pytest.raises(TokenFileError, match="cannot be read: No such file"):
        read_token(tmp_path / "missing")
    source = tmp_path / "in.jsonl"
    source.write_text('{"task_id": "a", "completion": "1", "gold": "1"}\n')
    for argv in (["score", str(source), "--server", f"127.0.0.1:{free_port()}"],
                 ["serve", "--port", "0", "--sandbox", "none"]):
        done = subprocess.run([str(RESTEM), *argv, "--token-file", str(empty)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.splitlines() == [f"restem {argv[0]}: the token file {empty} is empty"]


def test_quiet_keeps_only_the_error(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"task_id": "a", "completion": "1", "gold": "1"}\n')
    address = f"127.0.0.1:{free_port()}"
    options = ["--server", address, "--connect-timeout", "0.5"]
    for argv in (["-q", "score", str(source), *options], ["score", str(source), "-q", *options]):
        done = subprocess.run([str(RESTEM), *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        (line,) = done.stderr.splitlines()  # no "waiting up to" warning
        assert line.startswith(f"restem score: no verifier answered at {address} within 0.5 s")
    loud = subprocess.run([str(RESTEM), "score", str(source), *options], capture_output=True,
                          text=True, timeout=60)
    assert "waiting up to 0.5 s" in loud.stderr  # the flag is what hid it


def test_an_answer_that_arrives_twice_is_dropped_and_counted() -> None:
    from restem_client.client import _Batch

    batch = _Batch([to_request(MathCheck("1", "1"), request_id="mine")])
    answer = pb.VerifyResponse(request_id=batch.wire[0].request_id, verdict=pb.PASS)
    again = pb.VerifyResponse()
    again.CopyFrom(answer)
    assert batch.accept(answer) and not batch.accept(again)
    assert batch.duplicates == 1 and batch.answers[0].request_id == "mine"


def test_an_empty_program_is_no_answer_and_malformed_tests_still_invalid() -> None:
    """A model that wrote nothing gave a wrong answer; a check with no tests is malformed
    whatever its program."""
    core = Core(None, math_workers=1)
    try:
        with pytest.raises(NoAnswer, match=r"code\.program: empty"):
            core.validate(CodeCheck("  \n", StdioTests((("", "1\n"),))))
        with pytest.raises(InvalidCheck, match=r"code\.stdio\.cases: empty"):
            core.validate(CodeCheck("", StdioTests(())))
    finally:
        core.close()
    with pytest.raises(InvalidCheck, match=r"code\.tests: none"):
        decode(pb.VerifyRequest(code=pb.CodeTask(program="")), 4)
