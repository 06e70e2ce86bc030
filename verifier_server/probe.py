"""`python -m verifier_server.probe`: the container health check, through gRPC health.

Exits 0 when the server answers SERVING, 1 otherwise (NOT_SERVING while it drains, or no
answer). The health service needs no token, so the probe needs none; with TLS it trusts
the server's own certificate (RESTEM_TLS_CERT). Port and host come from the same
environment as the server's flags.

    python -m verifier_server.probe [--host 127.0.0.1] [--port 50051] [--timeout 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, timeout: float, tls_cert: Path | None = None) -> str:
    """The health status name, or the gRPC error code name when there is no answer."""
    if tls_cert:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(
            root_certificates=tls_cert.read_bytes()))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m verifier_server.probe")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("RESTEM_PORT", 50051)))
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args()
    cert = os.environ.get("RESTEM_TLS_CERT")
    status = check(f"{args.host}:{args.port}", args.timeout, Path(cert) if cert else None)
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
