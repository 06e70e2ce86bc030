"""`LocalVerifier`: the verifier in this process, with the same interface as
`VerifierClient` (`verify`, `verify_many`, `info`, `close`). Math runs on the local worker
pool; code starts a sandbox pool on first use (`sandbox="auto"`: docker if its engine answers,
else namespace; or "docker", "namespace", "local", or None for math and exact only)."""

from __future__ import annotations

from collections.abc import Iterable

from tqdm import tqdm

from restem_proto.v1 import verifier_pb2 as pb
from verifier_server.core import Verifier
from verifier_server.math import DEFAULT_TIMEOUT_S

CHUNK = 512


class LocalVerifier:
    def __init__(self, sandbox: str | None = "auto", sandbox_workers: int | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.core = Verifier(sandbox, sandbox_workers, math_timeout_s=timeout_s,
                             lazy_sandbox=True)

    def verify(
        self, request: pb.VerifyRequest, timeout_s: float | None = None
    ) -> pb.VerifyResponse:
        return self.verify_many([request])[0]

    def verify_many(self, requests: Iterable[pb.VerifyRequest], *,
                    progress: bool = False) -> list[pb.VerifyResponse]:
        """Results in input order; math and exact in chunks, code one by one."""
        requests = list(requests)
        out: list[pb.VerifyResponse] = []
        with tqdm(total=len(requests), disable=not progress, unit="req", desc="verify") as bar:
            for start in range(0, len(requests), CHUNK):
                chunk = self.core.verify_many(requests[start : start + CHUNK])
                out.extend(chunk)
                bar.update(len(chunk))
        return out

    def info(self) -> pb.ServerInfo:
        return self.core.info()

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> LocalVerifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
