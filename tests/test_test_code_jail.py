"""A request's test code never runs on the host: the issue's proof of concept and the hostile
test code of tests/adversarial.py, through `restem score` and through the gRPC service, on
the docker and namespace backends. The host file is never written, the run or the server
goes on, and benign requests sent beside the attacks keep their verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evals.checks import AssertTests, CodeCheck
from restem_client.client import VerifierClient
from restem_proto.v1 import verifier_pb2 as pb
from tests.adversarial import CORRECT_ADD, HOST_FILE, MARK, PROGRAMS
from tests.conftest import REPO
from tests.verifier_server_process import ServerProcess
from verifier_server.wire import to_request

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker, id="docker"),
            pytest.param("namespace", marks=pytest.mark.namespace, id="bwrap")]
HOSTILE = [h for h in PROGRAMS if h.kind == "test_code"]
BENIGN = AssertTests("def check(candidate):\n    assert candidate(2, 3) == 5\n", "add")


def asserts_request(program: str, tests: AssertTests, cpu_s: float = 0.0) -> pb.VerifyRequest:
    """The wire request the service reads: `program` against assert tests."""
    return to_request(CodeCheck(program, tests, cpu_s=cpu_s))


def proof_of_concept(target: Path) -> str:
    """The issue's scoring-file test code: it writes a host file as it is loaded."""
    return (f"import os\nopen({str(target)!r},'w').write('uid=%d pid=%d' % (os.getuid(), "
            "os.getpid()))\ndef check(candidate):\n    assert candidate(1) == 1\n")


def score_lines(tmp_path: Path) -> list[dict]:
    lines = [{"task_id": "poc", "completion": "def f(x):\n    return x\n",
              "tests": {"asserts": {"entry_point": "f",
                                    "test_code": proof_of_concept(tmp_path / "PWNED")}}}]
    for hostile in HOSTILE:
        lines.append({"task_id": hostile.name, "completion": CORRECT_ADD,
                      "tests": {"asserts": {"entry_point": "add",
                                            "test_code": hostile.program}}})
    lines.append({"task_id": "benign", "completion": CORRECT_ADD,
                  "tests": {"asserts": {"entry_point": BENIGN.entry_point,
                                        "test_code": BENIGN.test_code}}})
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_restem_score_keeps_test_code_off_the_host(tmp_path: Path, backend: str) -> None:
    scored = tmp_path / "in.jsonl"
    lines = score_lines(tmp_path)
    scored.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = subprocess.run([sys.executable, "-m", "restem_client.cli", "score", str(scored),
                          "--sandbox", backend], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not (tmp_path / "PWNED").exists()
    assert not Path(HOST_FILE).exists()
    out = [json.loads(line) for line in (tmp_path / "in_results.jsonl").read_text().splitlines()]
    verdicts = {record["task_id"]: record["verdict"] for record in out}
    assert len(out) == len(lines)  # nothing a test code did ended the run
    assert verdicts["poc"] == "INVALID_REQUEST"  # its open() fails in the jail: a broken test
    assert verdicts["benign"] == "PASS"
    for hostile in HOSTILE:
        assert verdicts[hostile.name] == hostile.expected, hostile.name
    assert all(MARK not in record.get("message", "") for record in out)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_service_keeps_test_code_off_the_host(tmp_path: Path, backend: str) -> None:
    """Every hostile test code in one stream, benign requests between them, then the server
    still serves; nothing reached the host."""
    requests, expected = [], []
    target = tmp_path / "PWNED"
    requests.append(asserts_request("def f(x):\n    return x\n",
                                    AssertTests(proof_of_concept(target), "f"), cpu_s=1.0))
    expected.append("INVALID_REQUEST")
    # A lone surrogate in a message (grpc/grpc#11442): protobuf refused the response, and
    # the batch around it was lost.
    requests.append(asserts_request("def add(a, b):\n    raise ValueError('\\ud800')\n",
                                    BENIGN))
    expected.append("RUNTIME_ERROR")
    for hostile in HOSTILE:
        requests.append(asserts_request(CORRECT_ADD, AssertTests(hostile.program, "add"),
                                        cpu_s=1.0))
        expected.append(hostile.expected)
        requests.append(asserts_request(CORRECT_ADD, BENIGN))
        expected.append("PASS")
        requests.append(asserts_request("def add(a, b):\n    return a - b\n", BENIGN))
        expected.append("FAIL")
    with ServerProcess(sandbox=backend) as server, VerifierClient(server.target) as client:
        answers = client.verify_many(requests)
        got = [pb.Verdict.Name(a.verdict) for a in answers]
        assert got == expected, [(e, g, a.message[:200]) for e, g, a in
                                 zip(expected, got, answers, strict=True) if e != g]
        assert all(MARK not in a.message for a in answers)
        again = client.verify(asserts_request(CORRECT_ADD, BENIGN))
        assert pb.Verdict.Name(again.verdict) == "PASS"
        assert server.process.poll() is None
    assert not target.exists() and not Path(HOST_FILE).exists()
