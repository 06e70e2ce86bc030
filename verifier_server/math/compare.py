"""Comparing typed answers without sympy: the fast path that decides most pairs inline.

`fast_equal(gold, answer)` returns True or False when strings, exact rationals, text and the
shape of containers decide, and None when a symbolic comparison is needed (see
`symbolic.py`, which runs in the worker pool). `canonical_key(value)` is the stable key that
majority voting groups by.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

from verifier_server.math.values import (
    NAME,
    Based,
    Expr,
    Matrix,
    Number,
    Relation,
    Seq,
    SetOf,
    Text,
    Value,
    has_variables,
    parse_value,
)

# A printed decimal matches an exact value rounded to its precision only when it carries at
# least this many significant digits (0.3 is not 1/3; 0.33 is, as math-verify's tests and
# people writing a matrix of decimals have it).
MIN_SIGNIFICANT_FOR_ROUNDING = 2

Equal = Callable[[Value, Value], bool | None]


def round_to(value: Fraction, decimals: int) -> Fraction:
    """Round half away from zero, as people do on paper."""
    scale = Fraction(10) ** decimals
    scaled = abs(value) * scale
    rounded = int(scaled + Fraction(1, 2))
    return (rounded / scale) * (1 if value >= 0 else -1)


def numbers_equal(gold: Number, answer: Number) -> bool:
    if gold.value == answer.value:
        return True
    if answer.percent != gold.percent:  # 28% is 28 (MATH's "what percent") and 0.28
        printed, other = (answer, gold) if answer.percent else (gold, answer)
        if printed.value / 100 == other.value:
            return True
    for printed, exact in ((answer, gold), (gold, answer)):
        if (printed.decimals is not None and exact.decimals is None
                and printed.significant >= MIN_SIGNIFICANT_FOR_ROUNDING
                and exact.value.denominator != 1  # an integer needs that integer
                and round_to(exact.value, printed.decimals) == printed.value):
            return True
    return False


def _normalized_text(s: str) -> str:
    return re.sub(r"\s+", "", s)  # braces matter in LaTeX: 2^{10} is not 2^10


def _all_equal(pairs: list[tuple[Value, Value]], equal: Equal) -> bool | None:
    undecided = False
    for a, b in pairs:
        result = equal(a, b)
        if result is False:
            return False
        undecided |= result is None
    return None if undecided else True


def multiset_equal(gold: tuple[Value, ...], answer: tuple[Value, ...], equal: Equal) -> bool | None:
    """Every gold item matched by a distinct answer item (and no answer item left over)."""
    if len(gold) != len(answer):
        return False
    remaining = list(answer)
    undecided = False
    for g in gold:
        for k, a in enumerate(remaining):
            result = equal(g, a)
            if result:
                del remaining[k]
                break
            undecided |= result is None
        else:
            if not undecided:
                return False
    return True if not remaining else (None if undecided else False)


def _solutions(gold: SetOf, answer: SetOf) -> tuple[Value, ...]:
    """The answer's items, a tuple written twice counted once when the gold's tuples are
    distinct: solutions of a system are a set. Numbers keep their repeats, which may be a
    root's multiplicity ("1, 1, 2" is not "1, 2")."""
    keys = [_key(item) for item in gold.items]
    if len(set(keys)) < len(keys) or not all(isinstance(i, Seq) for i in answer.items):
        return answer.items
    return tuple({_key(item): item for item in answer.items}.values())


def _labels_a_value(relation: Relation) -> bool:
    """`|AB| = 1`, `A:B = 2:3`, `\\frac{NO}{BO} = 2`: a left side that names a quantity (no
    sum, difference, power or function, unlike the equations `2x + z = 1`, `x^2 = 5` and
    `\\sin(x) = 1/2`) and a constant right side."""
    lhs, rhs = relation.lhs.latex, relation.rhs.latex
    return not re.search(r"[+\-^]|\\(?!frac\b)[a-zA-Z]+", lhs) and not has_variables(rhs)


def structural_equal(gold: Value, answer: Value, scalar_equal: Equal) -> bool | None:
    """Compare containers structurally; leaves go to scalar_equal."""
    for named, other in ((gold, answer), (answer, gold)):
        if isinstance(named, Relation) and not isinstance(other, Relation) and named.op == "=" \
                and (NAME.match(named.lhs.latex) or _labels_a_value(named)):
            # "y = 2x + 3" against "2x + 3"; "|AB| = 1" or "\frac{NO}{BO} = 2" against a value
            rhs = parse_value(named.rhs.latex)
            pair = (rhs, other) if named is gold else (other, rhs)
            return structural_equal(*pair, scalar_equal)
    if isinstance(gold, SetOf) != isinstance(answer, SetOf):  # {3} against 3
        single = gold if isinstance(gold, SetOf) else answer
        if len(single.items) != 1:
            return False
        pair = (single.items[0], answer) if single is gold else (gold, single.items[0])
        return structural_equal(*pair, scalar_equal)
    def recurse(a: Value, b: Value) -> bool | None:
        return structural_equal(a, b, scalar_equal)
    match gold, answer:
        case SetOf(), SetOf():
            return multiset_equal(gold.items, _solutions(gold, answer), recurse)
        case Seq(), Seq():
            if (gold.open, gold.close, len(gold.items)) != (answer.open, answer.close,
                                                              len(answer.items)):
                return False
            return _all_equal(list(zip(gold.items, answer.items, strict=True)), recurse)
        case Matrix(), Matrix():
            if [len(r) for r in gold.rows] != [len(r) for r in answer.rows]:
                return False
            return _all_equal([(a, b) for ra, rb in zip(gold.rows, answer.rows, strict=True)
                               for a, b in zip(ra, rb, strict=True)], recurse)
        case Relation(), Relation():
            if gold.op == answer.op == "=" and NAME.match(gold.lhs.latex) and NAME.match(
                    answer.lhs.latex):  # "f(x) = 2x + 3" and "y = 2x + 3": one function
                return scalar_equal(parse_value(gold.rhs.latex), parse_value(answer.rhs.latex))
            return scalar_equal(gold, answer)
    if {type(gold), type(answer)} == {Seq, Relation}:
        return scalar_equal(gold, answer)  # an inequality against an interval
    for matrix, other in ((gold, answer), (answer, gold)):
        if isinstance(matrix, Matrix) and isinstance(other, Expr) and "\\begin{" in other.latex:
            return scalar_equal(gold, answer)  # a sum or product of matrices: sympy decides
    if isinstance(gold, Seq | Matrix | Relation) or isinstance(answer, Seq | Matrix | Relation):
        return False
    return scalar_equal(gold, answer)


def fast_scalar_equal(gold: Value, answer: Value) -> bool | None:
    match gold, answer:
        case Number(), Number():
            return numbers_equal(gold, answer)
        case Based(), Based():
            return int(gold.digits, gold.base) == int(answer.digits, answer.base)
        case Based(), Number() | Expr():
            return gold.digits == _normalized_text(_key(answer))
        case Number() | Expr(), Based():
            return fast_scalar_equal(answer, gold)
        case Text(), _:
            return isinstance(answer, Text) and gold.text.lower() == answer.text.lower()
        case _, Text():
            return False
        case Expr(), Expr() if _normalized_text(gold.latex) == _normalized_text(answer.latex):
            return True
        case Relation(), Relation() if gold == answer:
            return True
    return None  # needs sympy


def fast_equal(gold: Value, answer: Value) -> bool | None:
    return structural_equal(gold, answer, fast_scalar_equal)


def _key(value: Value) -> str:
    match value:
        case Number():
            v = value.value
            return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
        case Based():
            return f"{value.digits}_{value.base}"
        case Text():
            return value.text.lower()
        case Expr():
            return _normalized_text(value.latex)
        case Seq():
            return value.open + ",".join(_key(i) for i in value.items) + value.close
        case SetOf():
            return "{" + ",".join(sorted(_key(i) for i in value.items)) + "}"
        case Matrix():
            return "[" + ";".join(",".join(_key(c) for c in row) for row in value.rows) + "]"
        case Relation():
            return f"{_key(value.lhs)}{value.op}{_key(value.rhs)}"
    raise TypeError(f"not a value: {value!r}")


def canonical_key(value: Value) -> str:
    """Stable key: equal numbers in any notation share it (\\frac12, 0.5, 1/2 -> "1/2"), set
    items are sorted, LaTeX leaves are compared without whitespace."""
    return _key(value)
