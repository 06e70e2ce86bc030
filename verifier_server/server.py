"""`restem serve`: the verifier as a gRPC server.

    restem serve [--host 127.0.0.1] [--port 50051] [--sandbox auto|docker|namespace|none]
                 [--sandbox-workers N] [--token-file F] [--tls-cert C --tls-key K [--client-ca A]]
                 [--metrics-port P] [--max-queue N] [--insecure] ...

Order matters: the Verifier (math workers, sandbox pool) starts before the gRPC server,
because gRPC in Python must not fork once it runs. Binding anything but loopback needs a
token or TLS, unless --insecure says otherwise. The token is read from a file, never from
the command line (where `ps` shows it). Health (`grpc.health.v1`) and reflection (grpcurl)
are served. SIGTERM or SIGINT: health turns NOT_SERVING (and stays answerable), new calls get
UNAVAILABLE so clients move to another replica, in-flight requests finish (up to --grace
seconds), then the process exits.

The sandbox: `auto` (the default) runs code on the docker backend when its engine answers
and holds the sandbox image; when not, the server still serves math and exact, answers code
requests INVALID_REQUEST with the reason, says so in GetInfo, and logs one warning line.
A backend asked for by name that cannot start stops the server: one line, exit status 2.
`none` serves math and exact only, by choice.

Every flag can also come from the environment, for containers: `--sandbox-workers 4` is
RESTEM_SANDBOX_WORKERS=4, `--insecure` is RESTEM_INSECURE=1; a flag given wins. The token
file defaults to /run/secrets/restem-token when that file exists (where compose and
Kubernetes mount secrets).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from restem_proto.v1 import verifier_pb2 as pb
from restem_proto.v1 import verifier_pb2_grpc as pb_grpc
from verifier_server.core import Verifier
from verifier_server.service import BearerToken, VerifierService
from verifier_server.token_file import TokenFileError, read_token

log = logging.getLogger("restem.serve")
LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Verifier"].full_name
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MOUNTED_TOKEN = Path("/run/secrets/restem-token")
ENV_PREFIX = "RESTEM_"


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="restem serve", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    p.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    p.add_argument("--sandbox", default="auto",
                   choices=["auto", "docker", "namespace", "local", "none"],
                   help="where code runs (auto: docker when its engine answers, else code is "
                   "off; none: math and exact only)")
    p.add_argument("--sandbox-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--math-workers", type=int, help="sympy worker processes (default: up to 4)")
    p.add_argument("--threads", type=int, default=0,
                   help="code jobs run at once (default 2 x sandbox workers; more only adds GIL "
                   "contention)")
    p.add_argument("--max-queue", type=int, default=4096, help="requests admitted at once")
    p.add_argument("--token-file", type=Path, help="file holding the bearer token clients send")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument("--client-ca", type=Path, help="PEM CA: require client certificates (mTLS)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    p.add_argument("--max-message-mb", type=int, default=64)
    p.add_argument("--keepalive-s", type=float, default=60.0)
    p.add_argument("--grace", type=float, default=60.0, help="seconds to finish work on SIGTERM")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback address without token or TLS")
    p.add_argument("--port-file", type=Path, help="write the bound port here once serving")
    _defaults_from_env(p, os.environ)
    if p.get_default("token_file") is None and MOUNTED_TOKEN.is_file():
        p.set_defaults(token_file=MOUNTED_TOKEN)
    return p


def _defaults_from_env(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    """RESTEM_<FLAG> sets a flag's default; argparse converts a string default with the
    flag's type when it parses, so a bad number fails naming the flag. Values argparse does
    not check (switches, choices) are kept in `env_problems` for `check_config`: the parser
    is also built by every other `restem` command, which must not fail on them."""
    problems = []
    for action in parser._actions:  # argparse has no public iterator over its options
        name = ENV_PREFIX + action.dest.upper()
        value = env.get(name)
        if value is None or not action.option_strings or action.dest == "help":
            continue
        if isinstance(action, argparse._StoreTrueAction):
            if value.lower() not in ("1", "true", "0", "false", ""):
                problems.append(f"{name}={value!r}: expected 1 or 0")
            parser.set_defaults(**{action.dest: value.lower() in ("1", "true")})
        elif action.choices and value not in action.choices:
            problems.append(f"{name}={value!r}: expected one of {sorted(action.choices)}")
        else:
            parser.set_defaults(**{action.dest: value})
    parser.set_defaults(env_problems=problems)


def check_config(args: argparse.Namespace) -> str | None:
    """Why this configuration must not start, or None."""
    if args.env_problems:
        return args.env_problems[0]
    if bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together"
    if args.client_ca and not args.tls_cert:
        return "--client-ca needs --tls-cert and --tls-key"
    exposed = args.host not in LOOPBACK
    if exposed and not (args.token_file or args.tls_cert or args.insecure):
        return (f"refusing to serve on {args.host} without --token-file or TLS "
                "(pass --insecure to do it anyway)")
    return None


def start_sandbox(verifier: Verifier, choice: str) -> str | None:
    """Start the sandbox pool for --sandbox `choice`; why the server must not start, or None.
    `auto` serves what it can: a pool that cannot start turns code off (one warning line)."""
    if choice == "none":
        verifier.turn_code_off("code execution is off by configuration (sandbox: none)")
        log.info("%s; math and exact are served", verifier.code_off)
        return None
    try:
        verifier.start_sandbox()
    except RuntimeError as exc:  # Sandbox's startup errors: the cause and the fix, in words
        tried = "docker" if choice == "auto" else choice
        others = " or ".join(b for b in ("docker", "namespace", "none") if b != tried)
        cause = " ".join(str(exc).split()).rstrip(".")
        if tried == "namespace":
            cause += " (what bubblewrap needs in a container: deploy/README.md)"
        reason = f"{cause}; or set RESTEM_SANDBOX (--sandbox) to {others}"
        if choice != "auto":
            return f"the {tried} sandbox cannot start: {reason}"
        verifier.turn_code_off(f"code execution is off: {reason}")
        log.warning("%s; math and exact are served", verifier.code_off)
    return None


async def serve(args: argparse.Namespace, verifier: Verifier, token: str | None) -> None:
    limit = args.max_message_mb * 2**20
    keepalive_ms = int(args.keepalive_s * 1000)
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    interceptors = [BearerToken(token)] if token else []
    server = grpc.aio.server(interceptors=interceptors, options=options)
    threads = args.threads or 2 * max(1, args.sandbox_workers)
    service = VerifierService(verifier, threads, args.max_queue)
    pb_grpc.add_VerifierServicer_to_server(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], server)
    address = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    if args.tls_cert:
        credentials = grpc.ssl_server_credentials(
            [(args.tls_key.read_bytes(), args.tls_cert.read_bytes())],
            root_certificates=args.client_ca.read_bytes() if args.client_ca else None,
            require_client_auth=bool(args.client_ca),
        )
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr=args.host, registry=service.metrics.registry)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("restem verifier serving on %s:%d (sandbox: %s)", args.host, port,
             verifier.sandbox_backend or "none, code off")
    if args.port_file:
        args.port_file.write_text(str(port))

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down: NOT_SERVING, finishing in-flight work (grace %.0f s)", args.grace)
    await health_servicer.enter_graceful_shutdown()
    service.draining = True  # new RPCs get UNAVAILABLE: clients retry on another replica
    deadline = loop.time() + args.grace
    while service.in_flight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await server.stop(max(1.0, deadline - loop.time()))
    service.shutdown()


def main(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; 2 for a configuration that must not start. Logging is
    the caller's to set up (`restem` does; run as a module, LOG_FORMAT at INFO)."""
    if problem := check_config(args):
        print(f"restem serve: {problem}", file=sys.stderr)
        return 2
    try:
        token = read_token(args.token_file) if args.token_file else None
    except TokenFileError as exc:
        print(f"restem serve: {exc}", file=sys.stderr)
        return 2
    # Worker pools first: nothing may fork once gRPC runs.
    backend = {"auto": "docker", "none": None}.get(args.sandbox, args.sandbox)
    verifier = Verifier(backend, args.sandbox_workers, math_workers=args.math_workers,
                        lazy_sandbox=True)
    if problem := start_sandbox(verifier, args.sandbox):
        verifier.close()
        print(f"restem serve: {problem}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args, verifier, token))
    finally:
        verifier.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    sys.exit(main(build_parser().parse_args()))
