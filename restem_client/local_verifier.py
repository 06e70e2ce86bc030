"""`LocalVerifier`: the verifier in this process, implementing the same `Verifier` protocol
as `VerifierClient` (`verify`, `verify_many`, `check_many`, `info`, `close`). Math runs on the
local worker pool; code starts a sandbox pool on first use (`sandbox="auto"`: docker if its
engine answers, else namespace; or "docker", "namespace", "local", or None for math and exact
only). A call's `timeout_s` is a deadline: code still running then is killed (TIMEOUT) and
the call raises VerifyTimeout, as the service does."""

from __future__ import annotations

import time
from collections.abc import Iterable

from tqdm import tqdm

from restem_client.requests import Verifier, VerifyTimeout
from restem_proto.v1 import verifier_pb2 as pb
from verifier_server.core import Verifier as Core
from verifier_server.math import DEFAULT_TIMEOUT_S

CHUNK = 512


class LocalVerifier(Verifier):
    def __init__(self, sandbox: str | None = "auto", sandbox_workers: int | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """`timeout_s`: seconds per symbolic math check (not a call's timeout)."""
        self.core = Core(sandbox, sandbox_workers, math_timeout_s=timeout_s, lazy_sandbox=True)

    def verify(
        self, request: pb.VerifyRequest, timeout_s: float | None = None
    ) -> pb.VerifyResponse:
        return self.verify_many([request], timeout_s=timeout_s)[0]

    def verify_many(self, requests: Iterable[pb.VerifyRequest], *, progress: bool = False,
                    timeout_s: float | None = None) -> list[pb.VerifyResponse]:
        """Results in input order, in chunks (math and exact batched, code in parallel)."""
        requests = list(requests)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        out: list[pb.VerifyResponse] = []
        with tqdm(total=len(requests), disable=not progress, unit="req", desc="verify") as bar:
            for start in range(0, len(requests), CHUNK):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                chunk = self.core.verify_many(requests[start : start + CHUNK], deadline)
                out.extend(chunk)
                bar.update(len(chunk))
        if deadline is not None and time.monotonic() >= deadline:
            raise VerifyTimeout(timeout_s)  # as over gRPC: a late answer is no answer
        return out

    def info(self) -> pb.ServerInfo:
        return self.core.info()

    def close(self) -> None:
        self.core.close()
