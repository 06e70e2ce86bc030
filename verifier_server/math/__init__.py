"""MATH and GSM8K answer verification as a plain library (no server needed).

    from verifier_server.math import check, check_many, extract_answer, canonical
    check(completion, gold)                 # MathVerdict: PASS / FAIL / NO_ANSWER / TIMEOUT
                                            # (an evals.checks.Verdict)
    check(text, "72", mode="gsm8k")         # GSM8K numbers, last-number fallback

Modules: `extract` (finding the answer), `normalize` (string clean-up), `values` (typed
answers), `compare` (the inline fast path and canonical keys), `symbolic` (sympy, run in
workers), `pool` (the worker pool with timeouts), `check` (the public checks).
"""

from verifier_server.math.check import (
    DEFAULT_TIMEOUT_S,
    MathVerdict,
    canonical,
    check,
    check_many,
)
from verifier_server.math.extract import Extraction, extract_answer

__all__ = ["DEFAULT_TIMEOUT_S", "Extraction", "MathVerdict", "canonical", "check", "check_many",
           "extract_answer"]
