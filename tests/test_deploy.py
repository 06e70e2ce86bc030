"""Deployment: the Kubernetes manifests validate offline against the API schemas and agree
with the image (ports, probes, token path); the compose file wires what its comments say; and
the server image, built offline, serves `restem score --server` from the host with the token
and refuses calls without it; started without the Docker socket, it serves math and says why
code is off."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evals.checks import CodeCheck, MathCheck, StdioTests
from restem_client.client import VerifierClient
from restem_proto.v1 import verifier_pb2 as pb
from tests.conftest import REPO
from tests.verifier_server_process import (
    free_port,
    run_server_container,
    wait_healthy,
    write_score_lines,
)
from verifier_server.server import MOUNTED_TOKEN
from verifier_server.wire import to_request

K8S = REPO / "deploy" / "k8s"
KUBERNETES = "1.33.0"  # hostUsers (pod user namespaces) is on by default from 1.33
RESTEM = Path(sys.executable).parent / "restem"


def _dockerfile_env() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return dict(re.findall(r"\b(RESTEM_[A-Z_]+)=(\S+)", text))


def _manifests() -> dict[str, dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    documents = [yaml.safe_load((K8S / name).read_text()) for name in kustomization["resources"]]
    return {d["kind"]: d for d in documents}


def test_manifests_validate_against_the_kubernetes_schemas(tmp_path: Path) -> None:
    import kubernetes_validate

    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in kustomization["resources"]:
        kubernetes_validate.validate(yaml.safe_load((K8S / name).read_text()), KUBERNETES,
                                     strict=True)
    # The check can fail: a misspelt field is rejected.
    broken = yaml.safe_load((K8S / "deployment.yaml").read_text())
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_probes_and_services_point_at_the_ports_the_image_serves() -> None:
    env = _dockerfile_env()
    grpc_port, metrics_port = int(env["RESTEM_PORT"]), int(env["RESTEM_METRICS_PORT"])
    manifests = _manifests()
    pod = manifests["Deployment"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == metrics_port

    service = manifests["Service"]["spec"]
    assert service["clusterIP"] == "None"  # headless: clients balance with round_robin
    assert {p["targetPort"] for p in service["ports"]} == set(ports)
    labels = pod["metadata"]["labels"]
    assert service["selector"] == labels
    assert manifests["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == labels
    assert manifests["NetworkPolicy"]["spec"]["egress"] == []
    assert "Egress" in manifests["NetworkPolicy"]["spec"]["policyTypes"]
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", manifests["Deployment"]["metadata"]
                                                ["name"])

    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["token"]["mountPath"] == str(MOUNTED_TOKEN)
    assert {v["name"]: v for v in pod["spec"]["volumes"]}["token"]["secret"]["secretName"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"]
    grace = float({e["name"]: e["value"] for e in container["env"]}["RESTEM_GRACE"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > grace


def test_compose_file_wires_token_ports_and_scraping() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    grpc_port = _dockerfile_env()["RESTEM_PORT"]
    services = compose["services"]
    for name, backend in (("verifier", "docker"), ("verifier-ns", "namespace")):
        service = services[name]
        assert service["environment"]["RESTEM_SANDBOX"] == backend
        assert service["secrets"] == [MOUNTED_TOKEN.name]
        assert service["read_only"] and service["cap_drop"] == ["ALL"]
        assert any(p.endswith(f":{grpc_port}") for p in service["ports"])
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["verifier"]["volumes"]
    assert "volumes" not in services["verifier-ns"]
    assert compose["secrets"][MOUNTED_TOKEN.name]["file"]
    scrape = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    metrics_port = _dockerfile_env()["RESTEM_METRICS_PORT"]
    assert targets == [f"verifier:{metrics_port}", f"verifier-ns:{metrics_port}"]


# ----------------------------------------------------------------------------- the image


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    out = subprocess.run([str(REPO / "deploy" / "build-images.sh")], capture_output=True,
                         text=True, timeout=1800, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    tags = [line.split()[0] for line in out.stdout.splitlines()]
    return {tag.split(":")[0]: tag for tag in tags}


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 or not check, out.stderr
    return out


@pytest.mark.docker
@pytest.mark.slow
def test_server_container_scores_from_the_host_with_the_token(
        images: dict[str, str], tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("deploy-test-token-0123456789\n")
    token.chmod(0o644)  # the container's user (10001) reads it through the bind mount
    port = free_port()
    started = time.monotonic()
    name = run_server_container(images["restem-verifier"], port, token)
    try:
        try:
            seconds = wait_healthy(port, started)
        except TimeoutError:
            pytest.fail(_docker("logs", name).stderr[-3000:])
        print(f"server container serving {seconds:.1f} s after docker run")
        assert _docker("inspect", "-f", "{{.Config.User}}", name).stdout.strip() == "10001:10001"

        generations = write_score_lines(tmp_path)
        scored = subprocess.run(
            [str(RESTEM), "score", str(generations), "--dataset", "humaneval",
             "--server", f"127.0.0.1:{port}", "--token-file", str(token)],
            capture_output=True, text=True, timeout=300)
        assert scored.returncode == 0, scored.stderr[-3000:]
        results = [json.loads(line) for line in
                   (tmp_path / "generations_results.jsonl").read_text().splitlines()]
        assert [r["verdict"] for r in results] == ["PASS", "FAIL", "PASS", "FAIL", "PASS",
                                                   "FAIL"]

        refused = subprocess.run([str(RESTEM), "score", str(generations), "--dataset",
                                  "humaneval", "--server", f"127.0.0.1:{port}"],
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2
        assert "UNAUTHENTICATED" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        _docker("rm", "-f", name, check=False)


@pytest.mark.docker
@pytest.mark.slow
def test_server_container_without_the_socket_serves_math_and_says_why_code_is_off(
        images: dict[str, str], tmp_path: Path) -> None:
    """Started the plain way (token, no Docker socket): math is served, code is refused with
    the reason and the fix, and the log says so in one line, without a traceback."""
    token = tmp_path / "token"
    token.write_text("deploy-test-token-0123456789\n")
    token.chmod(0o644)
    port = free_port()
    started = time.monotonic()
    name = run_server_container(images["restem-verifier"], port, token, lend_socket=False)
    try:
        try:
            wait_healthy(port, started)
        except TimeoutError:
            pytest.fail(_docker("logs", name).stderr[-3000:])
        with VerifierClient(f"127.0.0.1:{port}", token=token.read_text().strip()) as client:
            math = client.verify(to_request(MathCheck("so $\\boxed{\\frac{1}{2}}$", "0.5")))
            code = client.verify(to_request(CodeCheck("print(1)", StdioTests((("", "1\n"),)))))
            info = client.info()
        print(f"math: {pb.Verdict.Name(math.verdict)}; code: {pb.Verdict.Name(code.verdict)} "
              f"{code.message!r}")
        assert math.verdict == pb.PASS and code.verdict == pb.INVALID_REQUEST
        assert code.message.startswith(
            "code execution is off: no Docker engine reachable at unix:///var/run/docker.sock; "
            "start one, or mount its socket (-v /var/run/docker.sock:/var/run/docker.sock)")
        assert info.code_off == code.message and list(info.sandbox_backends) == []
        logs = _docker("logs", name)
        print(logs.stdout + logs.stderr)
        said = [line for line in logs.stderr.splitlines() if "code execution is off" in line]
        assert len(said) == 1 and "Traceback" not in logs.stdout + logs.stderr
    finally:
        _docker("rm", "-f", name, check=False)


@pytest.mark.docker
def test_server_container_refuses_to_listen_without_a_token(images: dict[str, str]) -> None:
    out = _docker("run", "--rm", "-e", "RESTEM_SANDBOX=none", images["restem-verifier"],
                  check=False)
    assert out.returncode == 2
    assert "refusing to serve on 0.0.0.0 without --token-file or TLS" in out.stderr
