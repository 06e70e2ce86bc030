"""The public checks: `check` one completion against a gold answer, `check_many` a batch
(identical pairs decided once, symbolic work fanned out to the worker pool), and `canonical`.

Never raises on any input and never hangs: inputs are capped, the inline fast path reads
at most INLINE_CHARS of a completion or gold in linear time (a longer one is read and decided
in a worker, where it can be stopped), and everything sympy does runs in a worker with a
wall-clock timeout. A timeout is its own verdict (TIMEOUT), never a silent FAIL; a failure of
the checker itself is SANDBOX_ERROR (an internal failure, never a wrong answer). Verdicts are
`evals.checks.Verdict`: PASS, FAIL, NO_ANSWER, TIMEOUT or SANDBOX_ERROR.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from evals.checks import Verdict
from verifier_server.math.compare import canonical_key, fast_equal
from verifier_server.math.extract import (
    MAX_COMPLETION_CHARS,
    Extraction,
    extract_answer,
    gold_answer,
)
from verifier_server.math.pool import WorkerDied, WorkerPool, default_pool
from verifier_server.math.values import Value, parse_answer

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
# A completion (read with extract) or a gold longer than this is read in a worker: benign
# MATH solutions are a few thousand characters, and reading 200,000 costs ~0.5 s of the
# server's GIL even in linear time.
INLINE_CHARS = 8_000
MODES = ("math", "gsm8k")


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
    if extract:
        extraction = extract_answer(completion, mode)
    else:
        extraction = Extraction(completion.strip(), "none") if completion.strip() else None
    answer = parse_answer(extraction.answer) if extraction else None
    gold_value = _gold_value(gold, mode) if len(gold) <= INLINE_CHARS else _read_gold(gold, mode)
    return _Prepared(extraction, answer, gold_value)


def _read_gold(gold: str, mode: str) -> Value:
    return parse_answer(gold_answer(gold, mode))


@functools.lru_cache(maxsize=4096)
def _gold_value(gold: str, mode: str) -> Value:
    """A gold's value, read once per distinct gold: ReST-EM checks 32 or 64 samples against
    each, and a gold may be a whole solution to read like a completion. Values are frozen.
    Only golds of at most INLINE_CHARS are kept."""
    return _read_gold(gold, mode)


def _heavy(completion: str, gold: str, extract: bool) -> bool:
    """Whether the pair is read in a worker rather than inline."""
    return (extract and len(completion) > INLINE_CHARS) or len(gold) > INLINE_CHARS


def _decide_fast(prepared: _Prepared) -> tuple[Verdict, str] | None:
    if prepared.answer is None:
        return Verdict.NO_ANSWER, "no answer found"
    fast = fast_equal(prepared.gold, prepared.answer)
    return None if fast is None else ((Verdict.PASS if fast else Verdict.FAIL), "")


def _decide_symbolic(prepared: _Prepared, decide) -> tuple[Verdict, str]:
    """`decide(gold, answer)`: the pool's `run`, or `symbolic.decide` inside a worker."""
    try:
        equal = decide(prepared.gold, prepared.answer)
    except (TimeoutError, WorkerDied) as exc:  # out of time or memory: not a wrong answer
        # TimeoutError includes NoWorkerAvailable: no worker was free within the timeout
        # (all busy, or none able to start); never FAIL, which is for sympy failing.
        return Verdict.TIMEOUT, str(exc)
    except Exception as exc:  # sympy itself failed on the input (in a worker: RuntimeError)
        return Verdict.FAIL, f"symbolic comparison failed: {exc}"
    return (Verdict.PASS if equal else Verdict.FAIL), ""


def _failed(exc: BaseException, started: float) -> MathVerdict:
    """The checker itself failed on an input: SANDBOX_ERROR, never a wrong answer."""
    log.exception("the math checker failed on an input")
    return MathVerdict(Verdict.SANDBOX_ERROR, None, None, None,
                       (time.perf_counter() - started) * 1000,
                       f"the math checker failed: {type(exc).__name__}")


def check_here(completion: str, gold: str, extract: bool, mode: str) -> tuple:
    """A whole pair read and decided in this process (a worker's job for a long completion
    or gold): (verdict name, extracted, canonical, rule, detail)."""
    from verifier_server.math.symbolic import decide

    started = time.perf_counter()
    try:
        prepared = _prepare(completion, gold, extract, mode)
        v = _verdict(prepared, _decide_fast(prepared) or _decide_symbolic(prepared, decide),
                     started)
    except Exception as exc:
        v = _failed(exc, started)
    return v.verdict.value, v.extracted, v.canonical, v.rule, v.detail


def _check_in_worker(completion: str, gold: str, extract: bool, mode: str, pool: WorkerPool,
                     timeout_s: float, wait_s: float | None, flow) -> MathVerdict:
    started = time.perf_counter()
    # All it reads: the end of a completion it extracts from; the start of a bare answer.
    sent = (completion[-MAX_COMPLETION_CHARS:] if extract
            else completion.strip()[:MAX_COMPLETION_CHARS])
    try:
        verdict, extracted, canonical_, rule, detail = pool.call(
            check_here, (sent, gold[-MAX_COMPLETION_CHARS:], extract, mode), timeout_s,
            wait_s=wait_s, flow=flow)
        verdict = Verdict(verdict)
    except (TimeoutError, WorkerDied) as exc:
        verdict, extracted, canonical_, rule, detail = Verdict.TIMEOUT, None, None, None, str(exc)
    except RuntimeError as exc:
        verdict, extracted, canonical_, rule, detail = (Verdict.SANDBOX_ERROR, None, None, None,
                                                        f"the math checker failed: {exc}")
    return MathVerdict(verdict, extracted, canonical_, rule,
                       (time.perf_counter() - started) * 1000, detail)


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
          timeout_s: float = DEFAULT_TIMEOUT_S, pool: WorkerPool | None = None,
          wait_s: float | None = None, flow=None) -> MathVerdict:
    """Is the completion's final answer equal to the gold answer?"""
    return check_many([(completion, gold)], extract=extract, mode=mode, timeout_s=timeout_s,
                      pool=pool, wait_s=wait_s, flow=flow)[0]


def check_many(pairs: Iterable[tuple[str, str]], *, extract: bool = True, mode: str = "math",
               timeout_s: float = DEFAULT_TIMEOUT_S, pool: WorkerPool | None = None,
               wait_s: float | None = None, flow=None) -> list[MathVerdict]:
    """Check (completion, gold) pairs; identical (gold, answer) pairs are decided once and
    the symbolic ones (and the pairs too long to read inline) run concurrently on the worker
    pool. `timeout_s` bounds each one's work in a worker; `wait_s` how long each waits for a
    free worker (None: the wait counts within timeout_s); `flow` names the caller whose turn
    these jobs take (`WorkerPool`). Results are in input order."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'math' or 'gsm8k', not {mode!r}")
    started = time.perf_counter()
    pairs = list(pairs)
    out: list[MathVerdict | None] = [None] * len(pairs)
    prepared: dict[int, _Prepared] = {}
    heavy: list[int] = []
    for i, (completion, gold) in enumerate(pairs):
        if _heavy(completion, gold, extract):
            heavy.append(i)
            continue
        try:
            prepared[i] = _prepare(completion, gold, extract, mode)
        except Exception as exc:  # a bug on some input: that pair's answer, not the batch's
            out[i] = _failed(exc, started)
    unique = {(p.gold, p.answer): p for p in reversed(prepared.values())}
    decided = {}
    for key, p in unique.items():
        try:
            if (fast := _decide_fast(p)) is not None:
                decided[key] = fast
        except Exception as exc:
            decided[key] = (Verdict.SANDBOX_ERROR, f"the math checker failed: {exc!r}")
    slow = [(key, p) for key, p in unique.items() if key not in decided]
    if slow or heavy:
        workers = pool or default_pool()

        def decide(gold: Value, answer: Value) -> bool:
            return workers.run(gold, answer, timeout_s, wait_s=wait_s, flow=flow)

        def in_worker(i: int) -> MathVerdict:
            return _check_in_worker(*pairs[i], extract, mode, workers, timeout_s, wait_s, flow)

        with ThreadPoolExecutor(max_workers=workers.size) as threads:
            results = threads.map(lambda item: _decide_symbolic(item[1], decide), slow)
            read = threads.map(in_worker, heavy)
            decided.update(zip((key for key, _ in slow), results, strict=True))
            for i, verdict in zip(heavy, read, strict=True):
                out[i] = verdict
    for i, p in prepared.items():
        try:
            out[i] = _verdict(p, decided[(p.gold, p.answer)], started)
        except Exception as exc:
            out[i] = _failed(exc, started)
    return out  # type: ignore[return-value]


def canonical(answer: str) -> str:
    """Stable key of a bare answer: equivalent numbers share it (\\frac12, 0.5, 1/2)."""
    return canonical_key(parse_answer(answer))


__all__ = ["DEFAULT_TIMEOUT_S", "MathVerdict", "canonical", "check", "check_many"]


