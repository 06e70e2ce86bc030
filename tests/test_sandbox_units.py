"""The sandbox's trusted-side pieces on their own: the typed value codec, the comparison
profiles, test and limit validation, the HumanEval split, and the seccomp program."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import AssertTest, CallTest, Limits, StdioTest
from sandbox.asserts import CallOutcome, judge, record
from sandbox.compare import stdout_matches, value_matches
from sandbox.jail import seccomp, values

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4)
    | st.frozensets(st.integers(), max_size=4),
    max_leaves=20,
)


def same(a: object, b: object) -> bool:
    """Equal with the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@given(plain)
def test_values_round_trip_with_exact_types(value: object) -> None:
    assert same(values.loads(values.dumps(value)), value)


def test_values_edge_cases() -> None:
    huge = 7**5000
    assert values.loads(values.dumps(huge)) == huge
    assert math.isnan(values.loads(values.dumps(float("nan"))))
    assert values.loads(values.dumps(float("-inf"))) == float("-inf")
    assert values.loads(values.dumps({1, 2})) == {1, 2}
    assert type(values.loads(values.dumps((1, [2])))) is tuple


@pytest.mark.parametrize("bad", [object(), type("I", (int,), {})(3), [1, {1: object()}]])
def test_values_refuse_other_types_and_subclasses(bad: object) -> None:
    with pytest.raises(values.EncodeError):
        values.encode(bad)


def test_values_refuse_depth_and_malformed_text() -> None:
    deep: list = []
    for _ in range(values.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(values.EncodeError, match="deeper"):
        values.encode(deep)
    for text in ['{"i": "1"}', '{"x": 1}', "[1,", '{"t": 3}', '{"i": 1, "f": "2"}']:
        with pytest.raises(values.DecodeError):
            values.loads(text)


@pytest.mark.parametrize(
    ("actual", "expected", "strict", "apps"),
    [
        ("7\n", "7\n", True, True),
        ("7", "7\n\n", True, True),  # trailing blank lines and newline
        ("7  \r\n", "7\n", True, True),  # CRLF and trailing spaces
        ("1 2\n", "1 2\n", True, True),
        ("1  2\n", "1 2\n", True, True),  # spacing inside a line
        ("1\n2\n", "1 2\n", False, True),  # line structure
        ("2 1\n", "1 2\n", False, True),  # order: APPS's token-set fallback accepts it
        ("yes\n", "YES\n", False, False),  # case
        ("7.0\n", "7\n", False, True),  # an expected integer needs an integer token
        ("0.3333333\n", "0.333333333\n", True, True),  # float within 1e-6
        ("0.34\n", "0.333\n", False, False),
        ("\n", "0\n", False, False),
    ],
)
def test_stdout_profiles(actual: str, expected: str, strict: bool, apps: bool) -> None:
    assert stdout_matches(actual, expected, "strict")[0] is strict
    assert stdout_matches(actual, expected, "apps")[0] is apps


@pytest.mark.parametrize(
    ("actual", "expected", "strict", "apps"),
    [
        ((1, 2), [1, 2], True, True),
        (True, 1, False, True),  # bool is not int (strict)
        (1, True, False, True),
        (3.0, 3, False, True),
        (3, 3.0, True, True),
        (0.1 + 0.2, 0.3, True, False),
        (float("nan"), float("nan"), False, False),
        (False, [False], True, True),  # APPS's one-element wrapping
        ({"a": [1, 2]}, {"a": (1, 2)}, True, False),
        ({1, 2}, {2, 1}, True, True),
        ("a", "A", False, False),
        (None, [], False, False),
    ],
)
def test_value_profiles(actual: object, expected: object, strict: bool, apps: bool) -> None:
    assert value_matches(actual, expected, "strict") is strict
    assert value_matches(actual, expected, "apps") is apps


def test_tests_and_limits_validate() -> None:
    with pytest.raises(ValueError, match="identifier"):
        CallTest("not a name", [1], 1)
    with pytest.raises(ValueError, match="cannot be sent"):
        CallTest("f", [object()], 1)
    with pytest.raises(ValueError, match="check"):
        AssertTest("def test():\n    pass\n", "f")
    with pytest.raises(ValueError, match="not valid Python"):
        AssertTest("def check(c):\n    assert (", "f")
    with pytest.raises(ValueError, match="encode_cyclic"):
        AssertTest("def check(c):\n    assert c(encode_cyclic('ab')) == 'ab'\n", "decode_cyclic")
    AssertTest("def check(c):\n    assert c(encode_cyclic('ab')) == 'ab'\n", "decode_cyclic",
               prompt="def encode_cyclic(s):\n    return s\n")
    with pytest.raises(ValueError, match="cpu_s"):
        Limits(cpu_s=0)
    assert Limits(cpu_s=2).wall_limit_s == 7
    assert StdioTest("1\n", "2\n").expected == "2\n"


CHECK = """
import random
def check(candidate):
    for _ in range(3):
        x = random.randint(0, 9)
        assert candidate(x) == x + 1, "wrong for " + str(candidate(x))
"""


def test_assert_split_records_calls_and_judges_outside() -> None:
    test = AssertTest(CHECK, "inc")
    calls = record(test, [])
    assert calls == record(test, [])  # unseeded random, same replay
    assert len(calls) == 6  # the failure message's calls are recorded too
    right = [(k, CallOutcome("ok", values.encode(values.loads(k)[0] + 1))) for k in calls]
    assert judge(test, right) == ("pass", "")
    wrong = [(k, CallOutcome("ok", values.encode(0))) for k in calls]
    state, detail = judge(test, wrong)
    assert state == "fail" and "wrong for 0" in detail
    raised = [(k, CallOutcome("raise", message="ZeroDivisionError")) for k in calls]
    assert judge(test, raised)[0] == "error"
    assert judge(test, right[:1])[0] == "more"


def test_seccomp_program_is_well_formed() -> None:
    program = seccomp.build_filter(executor_pid=1)
    assert all(len(insn) == 8 for insn in program)
    assert 20 < len(program) < 256
    seccomp.Filter(executor_pid=1)  # builds without installing
