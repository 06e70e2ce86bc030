"""Friendly builders for verifier requests, and responses as plain dictionaries.

    math_request("... \\boxed{12}", "12")
    exact_request("So the answer is (B).", "(B)")
    code_request(program, stdio=[("3 4\\n", "7\\n")])
    code_request(program, calls=("add", [([3, 4], 7)]))
    code_request(prompt + completion, asserts=(test_code, "add", prompt))
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.json_format import MessageToDict

from restem_proto.v1 import verifier_pb2 as pb

_MODES = {"math": pb.MATH_MODE_MATH, "gsm8k": pb.MATH_MODE_GSM8K}
_PROFILES = {"strict": pb.COMPARE_PROFILE_STRICT, "apps": pb.COMPARE_PROFILE_APPS,
             "human_eval": pb.COMPARE_PROFILE_HUMAN_EVAL}


def math_request(completion: str, gold: str, *, mode: str = "math", extract: bool = True,
                 request_id: str = "", timeout_s: float = 0.0) -> pb.VerifyRequest:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    task = pb.MathTask(completion=completion, gold=gold, extract=extract, mode=_MODES[mode])
    return pb.VerifyRequest(request_id=request_id, timeout_s=timeout_s, math=task)


def exact_request(completion: str, target: str, *, answer_format: str = "",
                  extract: bool = True, request_id: str = "") -> pb.VerifyRequest:
    task = pb.ExactTask(completion=completion, target=target, answer_format=answer_format,
                        extract=extract)
    return pb.VerifyRequest(request_id=request_id, exact=task)


def code_request(
    program: str,
    *,
    stdio: list[tuple[str, str]] | None = None,
    calls: tuple[str, list[tuple[list, Any]]] | None = None,
    asserts: tuple[str, str] | tuple[str, str, str] | None = None,
    cpu_s: float = 0.0,
    memory_mb: int = 0,
    profile: str = "strict",
    run_all: bool = False,
    request_id: str = "",
    timeout_s: float = 0.0,
) -> pb.VerifyRequest:
    """Exactly one of stdio (stdin, expected stdout) pairs, calls (fn_name, [(args, expected)])
    or asserts (test_code, entry_point[, prompt])."""
    if sum(x is not None for x in (stdio, calls, asserts)) != 1:
        raise ValueError("give exactly one of stdio=, calls=, asserts=")
    if profile not in _PROFILES:
        raise ValueError(f"profile must be one of {sorted(_PROFILES)}, got {profile!r}")
    task = pb.CodeTask(program=program, profile=_PROFILES[profile], run_all_tests=run_all,
                       limits=pb.Limits(cpu_time_s=cpu_s, memory_bytes=memory_mb * 2**20))
    if stdio is not None:
        task.stdio.cases.extend(pb.StdioCase(stdin=i, expected_stdout=o) for i, o in stdio)
    elif calls is not None:
        fn_name, cases = calls
        task.call.fn_name = fn_name
        task.call.cases.extend(
            pb.CallCase(args_json=json.dumps(list(args)), expected_json=json.dumps(expected))
            for args, expected in cases
        )
    else:
        test_code, entry_point, *prompt = asserts
        task.asserts.CopyFrom(pb.AssertTests(test_code=test_code, entry_point=entry_point,
                                             prompt=prompt[0] if prompt else ""))
    return pb.VerifyRequest(request_id=request_id, timeout_s=timeout_s, code=task)


def response_dict(response: pb.VerifyResponse) -> dict[str, Any]:
    """A response as a plain dictionary: verdict as its name, `passed` added."""
    out = MessageToDict(response, preserving_proto_field_name=True,
                        always_print_fields_with_no_presence=True)
    out["passed"] = response.verdict == pb.PASS
    return out


class DictVerifier:
    """Adapts a verifier (client or local) to `evals.score`'s dictionary protocol: requests
    {"kind": "math", "completion", "gold", "mode", "extract"}, {"kind": "exact",
    "completion", "target"} or {"kind": "code", "program", "tests"} in; {"verdict",
    "extracted", "canonical", "rule", "message"} out."""

    def __init__(self, verifier) -> None:
        self.verifier = verifier

    def verify_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        built = [self.build(r) for r in requests]
        return [
            {"verdict": pb.Verdict.Name(resp.verdict), "extracted": resp.extracted or None,
             "canonical": resp.canonical or None, "rule": resp.rule or None,
             "message": resp.message}
            for resp in self.verifier.verify_many(built)
        ]

    @staticmethod
    def build(r: dict[str, Any]) -> pb.VerifyRequest:
        if r["kind"] == "math":
            return math_request(r["completion"], r["gold"], mode=r["mode"], extract=r["extract"])
        if r["kind"] == "exact":
            return exact_request(r["completion"], r["target"])
        if r["kind"] == "code":
            tests = r["tests"]
            if "stdio" in tests:
                return code_request(r["program"], stdio=[tuple(c) for c in tests["stdio"]["cases"]])
            if "call" in tests:
                call = tests["call"]
                return code_request(r["program"],
                                    calls=(call["fn_name"], [tuple(c) for c in call["cases"]]))
            a = tests["asserts"]
            return code_request(r["program"],
                                asserts=(a["test_code"], a["entry_point"], a.get("prompt", "")))
        raise ValueError(f"unknown request kind {r.get('kind')!r}")
