"""The public checks: `check` one completion against a gold answer, `check_many` a batch
(identical pairs decided once, symbolic work fanned out to the worker pool), and `canonical`.

Never raises on any input and never hangs: inputs are capped, the inline fast path is
bounded, and everything sympy does runs in a worker with a wall-clock timeout. A timeout is
its own verdict (TIMEOUT), never a silent FAIL. Verdicts are `evals.checks.Verdict`: PASS,
FAIL, NO_ANSWER or TIMEOUT.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from evals.checks import Verdict
from verifier_server.math.compare import canonical_key, fast_equal
from verifier_server.math.extract import Extraction, extract_answer, gold_answer
from verifier_server.math.pool import WorkerDied, WorkerPool, default_pool
from verifier_server.math.values import Value, parse_answer

DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class MathVerdict:
    verdict: Verdict
    extracted: str | None   # the answer found in the completion
    canonical: str | None   # its canonical key (majority voting groups by it)
    rule: str | None        # the extraction rule that fired
    elapsed_ms: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS


@dataclass(frozen=True)
class _Prepared:
    extraction: Extraction | None
    answer: Value | None
    gold: Value


def _prepare(completion: str, gold: str, extract: bool, mode: str) -> _Prepared:
    if mode not in ("math", "gsm8k"):
        raise ValueError(f"mode must be 'math' or 'gsm8k', not {mode!r}")
    if extract:
        extraction = extract_answer(completion, mode)
    else:
        extraction = Extraction(completion.strip(), "none") if completion.strip() else None
    answer = parse_answer(extraction.answer) if extraction else None
    return _Prepared(extraction, answer, _gold_value(gold, mode))


@functools.lru_cache(maxsize=4096)
def _gold_value(gold: str, mode: str) -> Value:
    """A gold's value, read once per distinct gold: ReST-EM checks 32 or 64 samples against
    each, and a gold may be a whole solution to read like a completion. Values are frozen."""
    return parse_answer(gold_answer(gold, mode))


def _decide_fast(prepared: _Prepared) -> tuple[Verdict, str] | None:
    if prepared.answer is None:
        return Verdict.NO_ANSWER, "no answer found"
    fast = fast_equal(prepared.gold, prepared.answer)
    return None if fast is None else ((Verdict.PASS if fast else Verdict.FAIL), "")


def _decide_symbolic(prepared: _Prepared, pool: WorkerPool, timeout_s: float
                     ) -> tuple[Verdict, str]:
    try:
        equal = pool.run(prepared.gold, prepared.answer, timeout_s)
    except (TimeoutError, WorkerDied) as exc:  # out of time or memory: not a wrong answer
        # TimeoutError includes NoWorkerAvailable: no worker was free within the timeout
        # (all busy, or none able to start); never FAIL, which is for sympy failing.
        return Verdict.TIMEOUT, str(exc)
    except RuntimeError as exc:  # sympy itself failed on the input
        return Verdict.FAIL, f"symbolic comparison failed: {exc}"
    return (Verdict.PASS if equal else Verdict.FAIL), ""


def _verdict(prepared: _Prepared, decided: tuple[Verdict, str], started: float) -> MathVerdict:
    ext = prepared.extraction
    return MathVerdict(
        verdict=decided[0],
        extracted=ext.answer if ext else None,
        canonical=canonical_key(prepared.answer) if prepared.answer is not None else None,
        rule=ext.rule if ext else None,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        detail=decided[1],
    )


def check(completion: str, gold: str, *, extract: bool = True, mode: str = "math",
          timeout_s: float = DEFAULT_TIMEOUT_S, pool: WorkerPool | None = None) -> MathVerdict:
    """Is the completion's final answer equal to the gold answer?"""
    return check_many([(completion, gold)], extract=extract, mode=mode, timeout_s=timeout_s,
                      pool=pool)[0]


def check_many(pairs: Iterable[tuple[str, str]], *, extract: bool = True, mode: str = "math",
               timeout_s: float = DEFAULT_TIMEOUT_S, pool: WorkerPool | None = None
               ) -> list[MathVerdict]:
    """Check (completion, gold) pairs; identical (gold, answer) pairs are decided once and
    the symbolic ones run concurrently on the worker pool. Results are in input order."""
    started = time.perf_counter()
    prepared = [_prepare(c, g, extract, mode) for c, g in pairs]
    unique = {(p.gold, p.answer): p for p in reversed(prepared)}
    decided = {key: fast for key, p in unique.items() if (fast := _decide_fast(p)) is not None}
    slow = [(key, p) for key, p in unique.items() if key not in decided]
    if slow:
        workers = pool or default_pool()
        with ThreadPoolExecutor(max_workers=workers.size) as threads:
            results = threads.map(lambda item: _decide_symbolic(item[1], workers, timeout_s), slow)
            decided.update(zip((key for key, _ in slow), results, strict=True))
    return [_verdict(p, decided[(p.gold, p.answer)], started) for p in prepared]


def canonical(answer: str) -> str:
    """Stable key of a bare answer: equivalent numbers share it (\\frac12, 0.5, 1/2)."""
    return canonical_key(parse_answer(answer))


__all__ = ["DEFAULT_TIMEOUT_S", "MathVerdict", "canonical", "check", "check_many"]


