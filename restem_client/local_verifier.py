"""In-process verification: the verifier's checks run in this process (and its worker
pools), with no server. Same request and result dictionaries as the gRPC client."""

from __future__ import annotations

from typing import Any

from verifier_server.math import DEFAULT_TIMEOUT_S, check_many


class LocalVerifier:
    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.timeout_s = timeout_s

    def verify_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Results in input order; math requests are batched by (mode, extract)."""
        results: list[dict[str, Any] | None] = [None] * len(requests)
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, request in enumerate(requests):
            if request.get("kind") != "math":
                raise ValueError(f"request {i}: kind {request.get('kind')!r} is not supported yet")
            groups.setdefault((request["mode"], request["extract"]), []).append(i)
        for (mode, extract), indices in groups.items():
            pairs = [(requests[i]["completion"], requests[i]["gold"]) for i in indices]
            verdicts = check_many(pairs, mode=mode, extract=extract, timeout_s=self.timeout_s)
            for i, v in zip(indices, verdicts, strict=True):
                results[i] = {"verdict": str(v.verdict), "extracted": v.extracted,
                              "canonical": v.canonical, "rule": v.rule}
        return results  # type: ignore[return-value]
