"""The gRPC contract: committed stubs match the .proto, and the messages round-trip."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from restem_proto.v1 import verifier_pb2, verifier_pb2_grpc
from tests.conftest import REPO


def check_stubs(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(root / "proto" / "generate.py"), "--check"],
                          capture_output=True, text=True, timeout=120)


def test_committed_stubs_are_fresh() -> None:
    out = check_stubs(REPO)
    assert out.returncode == 0, out.stderr


def test_stale_stubs_are_detected(tmp_path: Path) -> None:
    shutil.copytree(REPO / "proto", tmp_path / "proto")
    shutil.copytree(REPO / "restem_proto", tmp_path / "restem_proto")
    proto = tmp_path / "proto" / "restem_proto" / "v1" / "verifier.proto"
    proto.write_text(proto.read_text().replace("double queue_ms = 11;",
                                               "double queue_ms = 11;\n  string added = 12;"))
    out = check_stubs(tmp_path)
    assert out.returncode == 1
    assert "verifier_pb2.py" in out.stderr


def test_request_round_trips_with_its_task() -> None:
    request = verifier_pb2.VerifyRequest(
        request_id="r1", timeout_s=2.5,
        code=verifier_pb2.CodeTask(
            program="print(int(input()) * 2)",
            stdio=verifier_pb2.StdioTests(cases=[verifier_pb2.StdioCase(stdin="2\n",
                                                                        expected_stdout="4\n")]),
        ),
    )
    decoded = verifier_pb2.VerifyRequest.FromString(request.SerializeToString())
    assert decoded == request
    assert decoded.WhichOneof("task") == "code"
    assert decoded.code.WhichOneof("tests") == "stdio"
    assert decoded.code.stdio.cases[0].expected_stdout == "4\n"


def test_service_has_the_contract_methods() -> None:
    service = verifier_pb2.DESCRIPTOR.services_by_name["Verifier"]
    assert service.full_name == "restem.verifier.v1.Verifier"
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {"Verify": (False, False), "VerifyStream": (True, True),
                       "VerifyBatches": (True, True), "GetInfo": (False, False)}
    assert hasattr(verifier_pb2_grpc, "VerifierServicer")
    names = set(verifier_pb2.Verdict.keys())
    assert {"PASS", "FAIL", "TIMEOUT", "SANDBOX_ERROR", "INVALID_REQUEST"} <= names
