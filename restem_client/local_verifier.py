"""`LocalVerifier`: the verifier in this process, implementing the same `Verifier` protocol
as `VerifierClient` (`check_many`, `info`, `close`): records straight to the core, nothing
encoded. Math runs on the local worker pool; code starts a sandbox pool on first use
(`sandbox="auto"`: docker if its engine answers, else namespace; or "docker", "namespace",
"local", or None for math and exact only). A call's `timeout_s` is a deadline: code still
running then is killed (TIMEOUT) and the call raises VerifyTimeout, as the service does."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tqdm import tqdm

from evals.checks import Check, CheckResult, VerifierInfo
from restem_client.verifier import Verifier, VerifyTimeout
from verifier_server.core import Verifier as Core
from verifier_server.math import DEFAULT_TIMEOUT_S

CHUNK = 512  # checks per core call: the progress bar moves, a deadline is seen between


class LocalVerifier(Verifier):
    def __init__(self, sandbox: str | None = "auto", sandbox_workers: int | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """`timeout_s`: seconds per symbolic math check (not a call's timeout)."""
        self.core = Core(sandbox, sandbox_workers, math_timeout_s=timeout_s, lazy_sandbox=True)

    def check_many(self, checks: Sequence[Check], *, progress: bool = False,
                   timeout_s: float | None = None) -> list[CheckResult]:
        """Results in input order, in chunks (math and exact batched, code in parallel)."""
        checks = list(checks)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        out: list[CheckResult] = []
        with tqdm(total=len(checks), disable=not progress, unit="check", desc="verify") as bar:
            for start in range(0, len(checks), CHUNK):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                chunk = self.core.check_many(checks[start : start + CHUNK], deadline)
                out.extend(chunk)
                bar.update(len(chunk))
        if deadline is not None and time.monotonic() >= deadline:
            raise VerifyTimeout(timeout_s)  # as over gRPC: a late answer is no answer
        return out

    def info(self) -> VerifierInfo:
        return self.core.info()

    def close(self) -> None:
        self.core.close()
