"""Request content read as an attacker would write it, on every path that parses it on the
trusted side: the math checker (crafted answers against its regular expressions, its parser
and sympy), the core's validation of every request kind and field, the exact checker, the
scoring file of `restem score`, and the gRPC service under many such requests at once.

Each case ends in a verdict (or INVALID_REQUEST naming the field), never a crash, a hang or
a stalled server. The bounds below are not timings: each is tens of times what the case
takes now and a small fraction of what it took before the fix (minutes, hours, or a
RecursionError). Real parts only: worker processes, a real `restem serve` on loopback, the
real client. The scanners that replace backtracking regular expressions are compared with
those expressions on generated text (the expressions are their contract).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.checks import (
    CallTests,
    Check,
    CheckResult,
    CodeCheck,
    ExactCheck,
    InvalidCheck,
    MathCheck,
    StdioTests,
    TestOutcome,
    Verdict,
)
from restem_client.client import VerifierClient
from restem_proto.v1 import verifier_pb2 as pb
from restem_proto.v1 import verifier_pb2_grpc as pb_grpc
from tests.conftest import REPO
from tests.verifier_server_process import ServerProcess
from verifier_server import core, service
from verifier_server.core import Verifier
from verifier_server.exact import check_exact
from verifier_server.exact import extract as exact_extract
from verifier_server.math import check, check_many
from verifier_server.math import extract as ex
from verifier_server.math.check import INLINE_CHARS
from verifier_server.math.pool import WorkerPool
from verifier_server.math.values import parse_answer
from verifier_server.wire import to_request

V = pb.Verdict.Name
RESTEM = Path(sys.executable).parent / "restem"
BIG = 200_000  # the most of a completion the checker reads
ENDED = {Verdict.PASS, Verdict.FAIL, Verdict.NO_ANSWER, Verdict.TIMEOUT}


def within(seconds: float, work, *args, **kwargs):
    """`work(*args)` run in a thread; its result, or a failure if it has not ended in time
    (a hang fails the test instead of stalling the suite)."""
    with ThreadPoolExecutor(1) as thread:
        future = thread.submit(work, *args, **kwargs)
        try:
            return future.result(timeout=seconds)
        except TimeoutError:
            pytest.fail(f"still running after {seconds} s")


def fill(unit: str, size: int = BIG, before: str = "", after: str = "") -> str:
    return before + unit * (size // len(unit)) + after


# ---------------------------------------------------------------- the math checker

# Each completion was found by reading the checker's regular expressions and parser as an
# attacker; the comment says what it did before.
CRAFTED = {
    # _MATH: an opener that never closes, repeated (quadratic: each scans to the end)
    "unclosed display math": fill("\\["),
    "unclosed inline math": fill("\\("),
    "unclosed math, 1 MB": fill("\\[", 1_000_000),
    "spaced unclosed math": fill("\\[ "),
    # _MINERVA: "final answer is" repeated with no "I hope it is correct" (quadratic), and a
    # run of spaces inside the answer before the phrase (each place rescans the run)
    "minerva phrase repeated": fill("final answer is "),
    "minerva spaces": "final answer is x" + " " * 100_000 + "y I hope it is correct",
    # _TRAILING r"[\s.!;:,*]+$" and _HOPE r"\s*I hope ...$": a long run that does not reach
    # the end (each start rescans the run)
    "dots before a letter": fill(".", after="x"),
    "spaced newlines": fill(" \n", after="x"),
    "bangs in a box cut off": fill("!", before="\\boxed{", after="}"),
    # boxes(): slicing text[:end] once per box (quadratic copying)
    "adjacent boxes": fill("\\boxed{1}"),
    "adjacent bare boxes": fill("\\boxed 1 "),
    "open boxes": fill("\\boxed{"),
    "nested braces": "\\boxed{" + "{" * 90_000 + "}" * 90_000 + "}",
    "nested fractions": "\\boxed{" + "\\frac{" * 5_000 + "1" + "}{2}" * 5_000 + "}",
    # values.py: recursion per level (RecursionError), 2**n readings of \pm (exponential)
    "percent signs": "\\boxed{1" + "%" * 1_990 + "}",
    "nested parentheses": "\\boxed{" + "(" * 990 + "1" + ")" * 990 + "}",
    "nested set braces": "\\boxed{" + "{" * 990 + "1" + "}" * 990 + "}",
    "plus-minus 40 times": "\\boxed{" + "\\pm 1" * 40 + "}",
    "a list of 1000 items": "\\boxed{" + ",".join(map(str, range(1_000))) + "}",
    # sympy: towers and factorials refused before they are evaluated
    "power tower": "\\boxed{10^{10^{10^{10}}}}",
    "two tower": "\\boxed{2^{2^{2^{2^{2^{2}}}}}}",
    "factorial": "\\boxed{1000000!}",
    "huge literal": "\\boxed{" + "9" * 100_000 + "}",
    # sympy: a symbolic tower, and nested powers whose exponents multiply (each held a
    # worker until its timeout)
    "variable tower": "\\boxed{x^{x^{x^{x}}}}",
    "nested powers": "\\boxed{((x^{199})^{199})^{199}}",
    "a quotient to a power": "\\boxed{\\frac{x^{199}}{y^{199}}^{199}}",
    # text that is not what a regular expression expects
    "NULs": fill("\0", after="\\boxed{5}"),
    "combining marks": "\\boxed{a" + "\u0301" * 100_000 + "}",
    "right-to-left": fill("\u202e\u05d0 ", after="\\boxed{5}"),
    "CJK": fill("答"),
    "lone surrogates": fill("\ud800x", after="\\boxed{5}"),
    "reasoning markers": fill("</think>"),
    # issue 30's rules, read as an attacker: overlapping runs after a value (backtracking),
    # a slice per number (quadratic copying), an opener per block (a scan each), nested
    # answer fields (recursion)
    "dots after a value": fill(".", before="The answer is 5 a", after="1"),
    "commas after an equals sign": fill(",", before="So x = 1", after="x5"),
    "many numbers in an answer phrase": fill("1 ", before="The answer is ", after="cats."),
    "output blocks never closed": fill("```output\n"),
    "answer fields never closed": fill('"answer": "'),
    "nested answer fields": '"answer": "' + '\\"answer\\": \\"' * 20_000 + '5"',
    "answer tags": fill("<answer>", after="</answer>" * 3),
    "parentheses after answer": fill("the answer (", after="is 5"),
    "brackets": fill("[", after="5]"),
}


@pytest.mark.parametrize("name", [n for n in CRAFTED if not n.startswith("unclosed math, 1")])
def test_the_rules_read_crafted_text_in_linear_time(name: str) -> None:
    """The extraction rules themselves, on the longest text the checker reads inline
    (INLINE_CHARS) and on the most it reads at all: a rule that is quadratic on either takes
    minutes at 200,000 characters, where these take well under a second each."""
    text = CRAFTED[name]
    for size in (INLINE_CHARS, ex.MAX_COMPLETION_CHARS):
        for mode in ("math", "gsm8k"):
            within(10, ex.extract_answer, text[-size:], mode)
            within(10, ex.gold_answer, text[-size:], mode)


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(workers=2) as workers:
        yield workers


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_completions_end_in_a_verdict(pool: WorkerPool, name: str) -> None:
    for gold in ("5", "\\frac{1}{2}"):
        verdict = within(30, check, CRAFTED[name], gold, pool=pool)
        assert verdict.verdict in ENDED, (name, verdict)


def test_crafted_golds_and_bare_answers_end_in_a_verdict(pool: WorkerPool) -> None:
    """The gold is request content too; extract=False reads the completion as the answer."""
    for name, text in CRAFTED.items():
        verdicts = within(60, check_many, [("5", text), (text, "5")], pool=pool)
        assert {v.verdict for v in verdicts} <= ENDED, name
        (bare,) = within(30, check_many, [(text, "5")], extract=False, pool=pool)
        assert bare.verdict in ENDED, name


def test_benign_answers_through_the_worker_keep_their_verdict(pool: WorkerPool) -> None:
    """A long completion is read in a worker; its verdict is the one read inline."""
    padding = "We reason step by step. " * 2_000
    for completion, gold, expected in (
            (padding + "So the answer is $\\boxed{\\frac{1}{2}}$.", "0.5", Verdict.PASS),
            (padding + "Final answer: $x^2-1$", "(x-1)(x+1)", Verdict.PASS),
            (padding + "\\boxed{3}", "4", Verdict.FAIL)):
        short = check(completion[-2_000:], gold, pool=pool)
        long = check(completion, gold, pool=pool)
        assert long.verdict == short.verdict == expected
        assert (long.extracted, long.canonical, long.rule) == (
            short.extracted, short.canonical, short.rule)


# The regular expressions the scanners replace: their contract, compared on generated text.
OLD_MATH = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<!\\)\$(.+?)(?<!\\)\$",
                      re.S)
OLD_MINERVA = re.compile(r"final answer is\s*(.+?)\.?\s*I hope it is correct", re.I | re.S)
OLD_HOPE = re.compile(r"\s*I hope it is correct\.?\s*$", re.I)
OLD_TRAILING = re.compile(r"[\s.!;:,*]+$")


def texts(*pieces: str, size: int = 24):
    return st.lists(st.sampled_from(pieces), max_size=size).map("".join)


@settings(max_examples=1500, deadline=None)
@given(texts("$", "$$", "\\", "\\[", "\\]", "\\(", "\\)", "[", ")", "a", " ", "\n"))
def test_math_spans_are_what_the_expression_finds(text: str) -> None:
    want = [(m.start(), m.end(), *next(m.span(g) for g in range(1, 5) if m.group(g) is not None))
            for m in OLD_MATH.finditer(text)]
    assert list(ex._math_matches(text)) == want


@settings(max_examples=1500, deadline=None)
@given(texts("final answer is", "FINAL ANSWER IS", "I hope it is correct", "i HOPE it is "
             "correct", " ", "\n", ".", "x", "\u3000", size=12))
def test_the_minerva_phrase_is_what_the_expression_finds(text: str) -> None:
    matches = list(OLD_MINERVA.finditer(text))
    assert ex._minerva(text) == ((matches[-1].start(), matches[-1].group(1)) if matches
                                 else None)


@settings(max_examples=1500, deadline=None)
@given(texts("I hope it is correct", " ", "\n", ".", "!", ";", ":", ",", "*", "x", "\u2003",
             "\x1c", "\u200b", size=12))
def test_closing_phrases_and_punctuation_go_as_the_expressions_took_them(text: str) -> None:
    assert ex._drop_hope(text) == OLD_HOPE.sub("", text)
    assert ex._drop_trailing(text) == OLD_TRAILING.sub("", text)


def test_whitespace_is_what_str_strip_and_backslash_s_read() -> None:
    every = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert set(ex.WHITESPACE) == every
    assert every == {chr(c) for c in range(0x3001) if re.fullmatch(r"\s", chr(c))}


def test_deep_and_wide_answers_are_read_without_recursion() -> None:
    """Each was a RecursionError or 2**40 readings; the bounded parse keeps MATH's shapes."""
    for text in ("1" + "%" * 1_999, "(" * 999 + "1" + ")" * 999, "{" * 999 + "1" + "}" * 999,
                 "\\pm 1" * 40, ",".join(["1"] * 1_000), "\\{" * 600 + "1" + "\\}" * 600):
        within(10, parse_answer, text)
    assert parse_answer("((((5))))") == parse_answer("5")
    assert len(parse_answer("\\{1\\pm\\sqrt{5},-2\\}").items) == 2


def test_a_slow_clients_queue_does_not_starve_another(pool: WorkerPool) -> None:
    """Free workers go to waiting flows in turn: the quick job waits for at most one slow
    job per flow ahead of it, not for the whole slow queue."""
    slow_gold = "\\{" + ",".join(f"(x+{k})^3" for k in range(16)) + "\\}"
    slow = "\\{" + ",".join(f"x^3+{3 * k}x^2+{3 * k * k}x+{k ** 3}" for k in reversed(range(16))
                            ) + "\\}"
    finished: list[str] = []

    def one(flow: str, answer: str, gold: str) -> None:
        verdict = check(answer, gold, extract=False, pool=pool, timeout_s=60, wait_s=120,
                        flow=flow)
        assert verdict.verdict is Verdict.PASS, verdict
        finished.append(flow)

    with ThreadPoolExecutor(12) as threads:
        jobs = [threads.submit(one, "slow", slow, slow_gold) for _ in range(10)]
        time.sleep(0.5)  # the slow flow's jobs hold both workers and queue behind them
        jobs.append(threads.submit(one, "quick", "x^2-1", "(x-1)(x+1)"))
        for job in jobs:
            job.result(timeout=300)
    assert finished.index("quick") <= 5, finished  # 2 running + at most 2 in turn before it


# ---------------------------------------------------------------- the core's validation


@pytest.fixture(scope="module")
def verifier():
    core_ = Verifier(None, math_workers=2)
    yield core_
    core_.close()


def math_request(completion: str, gold: str, *, extract: bool = True,
                 request_id: str = "") -> pb.VerifyRequest:
    return to_request(MathCheck(completion, gold, extract=extract), request_id=request_id)


def exact_request(completion: str, target: str, *, request_id: str = "") -> pb.VerifyRequest:
    return to_request(ExactCheck(completion, target), request_id=request_id)


def call_request(args_json: str = "[1]", expected_json: str = "1", **limits) -> pb.VerifyRequest:
    request = to_request(CodeCheck("def f(x):\n    return x", CallTests("f", (([1], 1),))))
    request.code.call.cases[0].args_json = args_json
    request.code.call.cases[0].expected_json = expected_json
    for name, value in limits.items():
        setattr(request.code.limits, name, value)
    return request


def stdio_request(cases: int) -> pb.VerifyRequest:
    """A stdio request of `cases` tests, built on the wire (a record refuses so many)."""
    request = to_request(CodeCheck("print(1)", StdioTests((("", "1\n"),))))
    request.code.stdio.cases.extend(pb.StdioCase(stdin="", expected_stdout="1\n")
                                    for _ in range(cases - 1))
    return request


REFUSED = [
    # json.loads raised RecursionError, out of validate and through the server
    (call_request(args_json="[" * 100_000 + "]" * 100_000), "code.call.cases[0].args_json"),
    (call_request(expected_json="{\"a\":" * 100_000 + "1" + "}" * 100_000),
     "code.call.cases[0].expected_json"),
    (call_request(args_json="[" + "[" * 80 + "]" * 80 + "]"),
     "field 'tests.call.cases[0][0]' is nested deeper than 64"),
    # integers past Python's digit limit: ValueError, named
    (call_request(expected_json="9" * 1_000_000), "code.call.cases[0].expected_json"),
    # a flood of small values costs gigabytes once parsed: refused by count
    (call_request(args_json="[" + "{}," * 1_500_000 + "{}]"), "more than 1,000,000 values"),
    # NaN passed every range check and broke Limits() inside the run (a lost batch); the
    # record reads cpu_time_s as cpu_s and wall_time_s as wall_s, and names them so
    (call_request(cpu_time_s=float("nan")), "field 'cpu_s'"),
    (call_request(wall_time_s=float("inf")), "field 'wall_s'"),
    # output kept per test crosses back to this process: a ceiling (the core's)
    (call_request(max_output_bytes=2**40), "code.output_bytes"),
    (call_request(memory_bytes=2**60), "code.memory_mb"),  # 2**40 MB: past the core's ceiling
    (call_request(memory_bytes=-1), "code.limits.memory_bytes"),
    (call_request(max_processes=10_000), "code.limits.max_processes"),
    (pb.VerifyRequest(request_id="x" * 5_000, math=pb.MathTask(completion="1", gold="1")),
     "request_id"),
    (stdio_request(10_001), "code.stdio.cases"),
]


def decode_and_validate(verifier: Verifier, request: pb.VerifyRequest) -> Check:
    """The whole path a request takes before it runs: read off the wire (into a record,
    which checks itself), then judged by the core; either may refuse it."""
    record = service.decode(request, 32)
    verifier.validate(record)
    return record


@pytest.mark.parametrize("request_, field", REFUSED, ids=[f for _, f in REFUSED])
def test_hostile_fields_are_invalid_requests_naming_the_field(
        verifier: Verifier, request_, field: str) -> None:
    with pytest.raises(InvalidCheck, match=re.escape(field)):
        within(30, decode_and_validate, verifier, request_)


def test_one_hostile_request_is_its_own_answer_in_a_batch(verifier: Verifier) -> None:
    requests = [math_request("\\boxed{1}", "1", request_id="a"),
                call_request(args_json="[" * 100_000, expected_json="1"),
                call_request(cpu_time_s=float("nan")),
                math_request(CRAFTED["unclosed display math"], "1", request_id="d"),
                exact_request("the answer is " + "." * 5_000_000, "(B)", request_id="e"),
                math_request("\\boxed{2}", "2", request_id="f")]
    answers = within(60, service.answer, verifier, requests)
    assert [V(a.verdict) for a in answers] == ["PASS", "INVALID_REQUEST", "INVALID_REQUEST",
                                               "NO_ANSWER", "FAIL", "PASS"]
    assert [a.request_id for a in answers] == ["a", "", "", "d", "e", "f"]


def test_numbers_json_reads_are_not_refused(verifier: Verifier) -> None:
    """1e999 is infinity and NaN a float to JSON: values, valid, answered (code is off)."""
    for args, expected in (("[1e999]", "1e999"), ("[NaN]", "-Infinity"), ("[[]]", "{}")):
        (response,) = service.answer(verifier, [call_request(args, expected)])
        assert V(response.verdict) == "INVALID_REQUEST" and response.message == verifier.code_off


def test_what_a_response_echoes_and_the_cache_holds_is_bounded(verifier: Verifier) -> None:
    huge = "1" * 3_000_000
    (response,) = service.answer(verifier, [math_request(huge, "1", extract=False)])
    assert len(response.extracted) <= core.MAX_ECHO_CHARS + 10
    exact = check_exact("the answer is " + "x" * 3_000_000, "x")
    assert exact.verdict is Verdict.FAIL
    (response,) = service.answer(verifier, [exact_request("the answer is " + "y" * 3_000_000, "y")])
    assert len(response.extracted) <= core.MAX_ECHO_CHARS + 10
    for i in range(20):  # distinct 3 MB requests: the cache keeps digests, not requests
        service.answer(verifier, [math_request(huge + str(i), "1", extract=False)])
    assert all(len(key) == 20 for key in verifier._math_cache)
    assert verifier._cache_bytes < core.MATH_CACHE_BYTES


def test_the_cache_counts_what_its_answers_hold_in_memory(verifier: Verifier) -> None:
    """Four-byte characters cost four bytes each in the cache's bound, not one (a bound
    counted in characters let 64 MiB of accounting hold about 500 MB)."""
    before = verifier._cache_bytes
    answer = "\U0001F600" * 8_000
    service.answer(verifier, [math_request(f"\\boxed{{{answer}}}", "1")])
    assert verifier._cache_bytes - before >= 4 * 8_000


def test_an_answer_the_wire_cannot_carry_is_its_own_sandbox_error() -> None:
    """The result of one request that protobuf refuses to encode (an exit code past int32)
    is that request's SANDBOX_ERROR, with its id cut to the limit; the batch goes on."""
    long_id = pb.VerifyRequest(request_id="x" * 5_000)
    broken = CheckResult(Verdict.FAIL, tests=(TestOutcome(True, Verdict.PASS, 2**40),))
    response = service._encode(long_id, broken)
    assert V(response.verdict) == "SANDBOX_ERROR" and "ValueError" in response.message
    assert len(response.request_id) == service.MAX_REQUEST_ID_CHARS


def test_the_exact_checker_strips_a_million_dots_at_once() -> None:
    completion = "So the answer is (B)" + "." * 5_000_000
    assert within(10, exact_extract, completion) == "(B)"
    assert within(10, exact_extract, "the answer is " + ". " * 2_000_000) == "."


# ---------------------------------------------------------------- records and `restem score`


def test_records_refuse_what_cannot_be_sent() -> None:
    with pytest.raises(InvalidCheck, match="lone surrogate"):
        MathCheck("\\boxed{\ud800}", "1")
    nested: list = [1]
    for _ in range(200):
        nested = [nested]
    with pytest.raises(InvalidCheck, match="nested deeper than 64"):
        CallTests("f", (([nested], 1),))
    with pytest.raises(InvalidCheck, match="integer of more than"):
        CallTests("f", (([10**5000], 1),))
    with pytest.raises(InvalidCheck, match="not a JSON value"):
        CallTests("f", (([{1, 2}], 1),))
    with pytest.raises(InvalidCheck, match="memory_mb"):
        CodeCheck("print(1)", CallTests("f", (([1], 1),)), memory_mb=2**60)


def hostile_file(path: Path, long_line_bytes: int) -> list[str]:
    """A scoring file with one good line between each hostile one; the error expected for
    each line (None: scored)."""
    good = json.dumps({"task_id": "t", "completion": "\\boxed{1}", "gold": "1"}).encode()
    lines: list[tuple[bytes, str | None]] = [
        (b"\xef\xbb\xbf" + good, None),  # a byte order mark on the first line
        (b'{"task_id": "a", "completion": "\xff\xfe bad bytes", "gold": "1"}',
         "not UTF-8 (byte 0xff"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"task_id": "a", "completion": "x", "gold": ' + b"9" * 1_000_000 + b"}",
         "not JSON that can be read"),
        (b'{"a":' * 150 + b"1" + b"}" * 150, "nested deeper than 100"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b"12", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b'{"task_id": "a", "completion": "\\ud800", "gold": "1"}', "lone surrogate"),
        (b'{"task_id": "a", "completion": "x", "tests": {"call": {"fn_name": "f", "cases": '
         b'[[' + b"[" * 90 + b"]" * 90 + b', 1]]}}}', "nested deeper than 64"),
        (b"x" * long_line_bytes, "longer than 16,777,216 bytes"),
    ]
    out = []
    with path.open("wb") as f:
        for raw, error in lines:
            f.write(raw + b"\n" + good + b"\r\n\n")
            out += [error, None]
    with path.open("ab") as f:  # a last line without its newline, scored too
        f.write(json.dumps({"task_id": "\ud800 surrogate id", "completion": "\\boxed{2}",
                            "gold": "2"}).encode())
    return [*out, None]


def test_restem_score_reports_each_hostile_line_and_scores_the_rest(tmp_path: Path) -> None:
    source = tmp_path / "hostile.jsonl"
    expected = hostile_file(source, long_line_bytes=100 * 2**20)
    done = within(300, subprocess.run, [str(RESTEM), "score", str(source)],
                  capture_output=True, text=True, cwd=REPO)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1  # some lines were malformed
    results = [json.loads(line) for line in
               (tmp_path / "hostile_results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(results) == len(expected)  # every non-empty line, each once
    for result, error in zip(results, expected, strict=True):
        if error is None:
            assert result["verdict"] == "PASS", result
        else:
            assert result["verdict"] == "INVALID_REQUEST" and error in result["error"], (
                error, result)
            assert f"line {result['line']}: {result['error']}" in done.stderr
    assert results[-1]["task_id"] == "\ud800 surrogate id"  # written back as its escape
    summary = json.loads((tmp_path / "hostile_results.summary.json").read_text())
    assert summary["invalid"] == sum(e is not None for e in expected)


def test_restem_score_of_an_empty_file(tmp_path: Path) -> None:
    source = tmp_path / "empty.jsonl"
    source.write_bytes(b"")
    done = subprocess.run([str(RESTEM), "score", str(source)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "empty_results.jsonl").read_text() == ""
    assert json.loads((tmp_path / "empty_results.summary.json").read_text())["count"] == 0


# ---------------------------------------------------------------- the gRPC service


@pytest.fixture(scope="module")
def math_server():
    with ServerProcess("--math-workers", "2", sandbox="none") as proc:
        yield proc


def hostile_math(round_: int) -> list[pb.VerifyRequest]:
    """Crafted answers, new each round (answers are cached: the same ones cost nothing)."""
    return [math_request(f"{round_} {text}", gold) for text in list(CRAFTED.values())[:8]
            for gold in ("5", "x^2")]


def test_hostile_math_at_once_never_stalls_benign_requests(math_server) -> None:
    """Three clients stream crafted answers while a fourth asks one benign question at a
    time: each benign answer is right and comes back while the flood is still going."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def flood() -> None:
        try:
            with VerifierClient(math_server.target) as client:
                round_ = 0
                while not stop.is_set():
                    round_ += 1
                    for answer in client.verify_many(hostile_math(round_), timeout_s=600):
                        assert answer.verdict != pb.VERDICT_UNSPECIFIED
        except BaseException as exc:  # reported below
            errors.append(exc)

    attackers = [threading.Thread(target=flood) for _ in range(3)]
    for thread in attackers:
        thread.start()
    try:
        time.sleep(2)
        with VerifierClient(math_server.target) as client:
            for k in range(1, 6):
                benign = math_request(f"so $\\boxed{{\\frac{{{k}}}{{2}}}}$", f"{k / 2}")
                answer = client.verify(benign, timeout_s=30)
                assert V(answer.verdict) == "PASS"
                symbolic = math_request(f"\\boxed{{x^2+{2 * k}x+{k * k}}}", f"(x+{k})^2")
                assert V(client.verify(symbolic, timeout_s=30).verdict) == "PASS"
                exact = exact_request("So the answer is (C).", "(C)")
                assert V(client.verify(exact, timeout_s=30).verdict) == "PASS"
            assert all(t.is_alive() for t in attackers)  # answered during the flood
    finally:
        stop.set()
        for thread in attackers:
            thread.join(timeout=600)
    assert not errors, errors


def test_hostile_unary_requests_get_answers_not_errors(math_server) -> None:
    with VerifierClient(math_server.target) as client:
        for request in (call_request(args_json="[" * 100_000),
                        call_request(cpu_time_s=float("nan")),
                        math_request("x", "1", request_id="r" * 5_000)):
            with pytest.raises(grpc.RpcError) as refused:
                client.verify(request, timeout_s=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        answer = client.verify(math_request(CRAFTED["minerva phrase repeated"], "5"),
                               timeout_s=60)
        assert V(answer.verdict) == "NO_ANSWER"


def server_rss_mb(server: ServerProcess) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def test_a_stream_that_sends_and_never_reads_holds_a_bounded_buffer(math_server) -> None:
    """Each answer echoes 8 KB; the client sends without reading. The server stops reading
    once its window is full instead of buffering every answer."""
    request = math_request("7" * 8_000, "7", extract=False)
    sent = [0]

    def requests():
        while True:
            sent[0] += 1
            yield request

    channel = grpc.insecure_channel(math_server.target)
    call = pb_grpc.VerifierStub(channel).VerifyStream(requests())
    before = server_rss_mb(math_server)
    time.sleep(15)
    grown = server_rss_mb(math_server) - before
    count = sent[0]
    call.cancel()
    channel.close()
    assert count < 20_000, count  # unread answers stop the reading (window 2,048 + buffers)
    assert grown < 300, grown
    with VerifierClient(math_server.target) as client:  # and the server serves on
        assert V(client.verify(math_request("\\boxed{1}", "1"), timeout_s=30).verdict) == "PASS"


def test_requests_too_big_to_pack_together_are_sent_apart(math_server) -> None:
    """40 requests of 2 MB were packed 64 to a message (80 MB, over the 64 MB limit): the
    whole call failed with RESOURCE_EXHAUSTED. One request over the limit is answered
    INVALID_REQUEST by the client, and the rest go through."""
    big = [math_request(" " * 2_000_000 + str(i % 2), "1", extract=False) for i in range(40)]
    oversized = math_request("1" * (65 * 2**20), "1", extract=False, request_id="huge")
    with VerifierClient(math_server.target) as client:
        answers = within(300, client.verify_many, [*big, oversized], timeout_s=300)
    assert [V(a.verdict) for a in answers[:40]] == ["FAIL", "PASS"] * 20
    assert V(answers[-1].verdict) == "INVALID_REQUEST" and answers[-1].request_id == "huge"
    assert "not sent" in answers[-1].message


@pytest.mark.namespace
def test_a_flood_of_spinning_programs_never_delays_math() -> None:
    """Code jobs and math batches run on separate thread pools: while 10 programs that spin
    to their time limit queue for the one sandbox worker (about 15 s of work; math waited
    behind all of them in one queue), math and exact answers come back at once."""
    spin = to_request(CodeCheck("while True: pass", StdioTests((("", ""),)), cpu_s=1.5))
    with ServerProcess(sandbox="namespace", workers=1) as server, \
            VerifierClient(server.target) as client, ThreadPoolExecutor(10) as threads:
        flood = [threads.submit(client.verify, spin, timeout_s=600) for _ in range(10)]
        time.sleep(2)
        started = time.monotonic()
        assert V(client.verify(math_request("\\boxed{1}", "1"), timeout_s=60).verdict) == "PASS"
        assert V(client.verify(exact_request("the answer is B", "B"), timeout_s=60).verdict
                 ) == "PASS"
        waited = time.monotonic() - started
        assert sum(f.done() for f in flood) < 6  # the flood was still running meanwhile
        assert waited < 5, waited
        assert all(V(f.result(timeout=600).verdict) == "TIMEOUT" for f in flood)
