"""Hostile programs on every isolating backend, one at a time and above the core count.

After each: the expected status, no VIOLATION marker or leaked secret in any output, no
process left in the worker or on the host beyond the pool's executors, the scratch space
empty, the pool back at its size, and the canary passing. Then: no job runs as host root
(seen from the host), nothing one job writes is there for the next, and, when the tests run
as root, the same checks again as an unprivileged user. (The `local` backend isolates
nothing by design and is not run here.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sandbox import AssertTest, CallTest, Limits, Sandbox, StdioTest
from tests.adversarial import (
    CORRECT_ADD,
    FIND_EARLIER_JOBS,
    FIND_STATE,
    HOST_FILE,
    LEAVE_STATE,
    MARK,
    PROGRAMS,
    SECRET_ENV,
    SECRET_VALUE,
    STOP_THE_NEXT_CHILD,
    Hostile,
)
from tests.conftest import REPO

PER_WORKER = 3  # executor processes of an idle worker (see executor_pids)
FAST = Limits(cpu_s=1.0, wall_s=3.0, memory_mb=256)
CHECK = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(1, 1) == 2\n"
BACKENDS = [pytest.param("docker", marks=pytest.mark.docker, id="docker"),
            pytest.param("namespace", marks=pytest.mark.namespace, id="bwrap")]


def run_hostile(sb: Sandbox, hostile: Hostile):
    """(status, every text the run produced) for one hostile program."""
    if hostile.kind == "execute":
        ex = sb.execute(hostile.program, limits=FAST)
        return ex.status, [ex.stdout, ex.stderr, ex.detail]
    if hostile.kind == "test_code":
        program, tests = CORRECT_ADD, [AssertTest(hostile.program, "add")]
    else:
        program, tests = hostile.program, {
            "stdio": [StdioTest("", "42\n")],
            "call": [CallTest("add", [2, 3], 5)],
            "assert": [AssertTest(CHECK, "add")],
        }[hostile.kind]
    result = sb.run(program, tests, FAST)
    texts = [result.detail] + [t.stdout + t.stderr + t.detail for t in result.tests]
    return result.verdict, texts


def executor_pids() -> list[int]:
    """Processes on this host running the sandbox executor (in any container or jail). An
    idle worker has PER_WORKER: the executor, its zygote and the child prepared for the next
    job."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if "python" in Path(argv[0].decode()).name and b"/opt/restem/executor.py" in argv:
                pids.append(int(entry.name))
    return pids


def executor_processes() -> int:
    return len(executor_pids())


def wait_for_executors(count: int, timeout_s: float = 30.0) -> int:
    """The host's executor count once it is `count`, or as it is after `timeout_s`: replaced
    workers, and those of a closed pool, are torn down in the background."""
    deadline = time.monotonic() + timeout_s
    while (found := executor_processes()) != count and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def assert_pool_clean(sb: Sandbox, executors: int) -> None:
    """`executors`: how many executor processes the host should run (this pool and others)."""
    assert sb.wait_ready(120), "the pool did not come back to its size"
    for answer in sb.inspect():
        assert answer.get("processes") == 0, answer
        assert answer.get("scratch") == [], answer
    assert sb.canary(), "the canary failed after the run"
    assert wait_for_executors(executors) == executors


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def host_secret():
    path = Path(f"/tmp/restem-host-secret-{uuid.uuid4().hex}")
    path.write_text(SECRET_VALUE)
    os.environ[SECRET_ENV] = SECRET_VALUE
    yield path
    path.unlink()
    del os.environ[SECRET_ENV]


@pytest.fixture(scope="module")
def one_worker(backend: str, host_secret):
    others = executor_processes()
    with Sandbox(backend=backend, workers=1, cache_size=0) as sb:
        sb.expected_executors = others + PER_WORKER * sb.size
        yield sb


def test_there_are_at_least_thirty() -> None:
    assert len(PROGRAMS) >= 30
    assert len({h.name for h in PROGRAMS}) == len(PROGRAMS)


@pytest.mark.parametrize("hostile", PROGRAMS, ids=lambda h: h.name)
def test_hostile_program_alone(one_worker: Sandbox, hostile: Hostile) -> None:
    status, texts = run_hostile(one_worker, hostile)
    assert status == hostile.expected, texts
    for text in texts:
        assert MARK not in text and SECRET_VALUE not in text, text[:500]
    assert not Path(HOST_FILE).exists(), Path(HOST_FILE).read_text()
    assert_pool_clean(one_worker, one_worker.expected_executors)


def test_test_code_cannot_judge_another_request(one_worker: Sandbox) -> None:
    """Test code that patches every judge it can find, then a wrong program on the same
    worker with an honest test: the hook died with its job."""
    hook = next(h for h in PROGRAMS if h.name == "test_code_hooks_the_judge")
    assert run_hostile(one_worker, hook)[0] == "PASS"  # the correct add, judged honestly
    wrong = one_worker.run("def add(a, b):\n    return 0\n", [AssertTest(CHECK, "add")], FAST)
    assert wrong.verdict == "FAIL", wrong


def test_hostile_programs_above_core_count(backend: str, host_secret) -> None:
    workers = 2 * (os.cpu_count() or 1)
    others = executor_processes()
    with Sandbox(backend=backend, workers=workers, cache_size=0) as sb:
        with ThreadPoolExecutor(2 * workers) as threads:
            outcomes = list(threads.map(lambda h: run_hostile(sb, h), PROGRAMS))
        wrong = [
            (h.name, h.expected, status)
            for h, (status, _) in zip(PROGRAMS, outcomes, strict=True)
            if status != h.expected
        ]
        assert not wrong
        for _, texts in outcomes:
            assert not any(MARK in t or SECRET_VALUE in t for t in texts)
        assert_pool_clean(sb, others + PER_WORKER * workers)
    # A closed pool leaves no executor behind (and the next test counts a settled host).
    assert wait_for_executors(others) == others


def test_no_job_runs_as_host_root(one_worker: Sandbox) -> None:
    """Seen from the host, where a user namespace cannot disguise it: the executors (and the
    children they fork for jobs, which keep their uid) hold no uid 0, real or effective."""
    pids = executor_pids()
    assert pids, "no executor process found on the host"
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        assert "0" not in uids, (pid, status[:300])


@pytest.mark.parametrize("daemon", [False, True], ids=["files", "daemon"])
def test_no_state_crosses_runs(one_worker: Sandbox, daemon: bool) -> None:
    token = uuid.uuid4().hex
    names = one_worker.worker_names()
    left = one_worker.execute(LEAVE_STATE.format(token=token, daemon=daemon), limits=FAST)
    assert left.status == "PASS", left.stderr
    assert "/tmp/job" in left.stdout  # it did write (the scratch directory, at least)
    if not daemon:  # a clean job keeps its worker: the next job runs in the same jail
        assert one_worker.worker_names() == names
    found = one_worker.execute(FIND_STATE.format(token=token), limits=FAST)
    assert found.status == "PASS", found.stderr
    assert "looked in" in found.stdout and MARK not in found.stdout, found.stdout
    assert_pool_clean(one_worker, one_worker.expected_executors)


def test_a_job_cannot_reach_the_next_jobs_child(one_worker: Sandbox) -> None:
    for _ in range(3):
        one_worker.execute(STOP_THE_NEXT_CHILD, limits=FAST)
        after = one_worker.execute("print(1)", limits=FAST)
        assert after.status == "PASS" and after.stdout == "1\n", after


def test_a_job_finds_nothing_of_earlier_jobs(one_worker: Sandbox) -> None:
    """Earlier jobs on the same worker (a program, its stdin and output, test code with its
    expected values, a judge round) leave nothing in the memory or the stack a later job
    inherits."""
    prefix = "restem-earlier-job-"
    token = lambda: prefix + uuid.uuid4().hex  # noqa: E731
    secret_stdin, secret_out, secret_test = token(), token(), token()
    echo = f"print(input())\nprint({secret_out!r})"
    assert one_worker.run(echo, [StdioTest(secret_stdin + "\n", "")], FAST).verdict == "FAIL"
    test = (f"def check(candidate):\n    assert abs(candidate(2, 3) - 5) < 1\n"
            f"    assert {secret_test!r} != candidate(1, 1)\n")
    assert one_worker.run(CORRECT_ADD, [AssertTest(test, "add")], FAST).passed  # judge job
    scan = one_worker.execute(FIND_EARLIER_JOBS.format(prefix=prefix), limits=FAST)
    assert scan.status == "PASS", scan.stderr
    assert scan.stdout.strip() == "VIOLATION nothing found", scan.stdout[:2000]


UNPRIVILEGED_USER = "restem-test"


def unprivileged_command(argv: list[str]) -> list[str]:
    """`argv` as UNPRIVILEGED_USER (created if missing; in the docker group, when there is
    one), in a private mount namespace where the Python installation and this repository are
    reachable: pyenv puts Python under /root, which only root may enter (and a clone may sit
    there too), so the first closed directory above each is covered by an open tmpfs with the
    directory bound back in. The host sees none of it."""
    if subprocess.run(["id", UNPRIVILEGED_USER], capture_output=True).returncode != 0:
        groups = ["--groups", "docker"] if shutil.which("docker") and subprocess.run(
            ["getent", "group", "docker"], capture_output=True).returncode == 0 else []
        subprocess.run(["useradd", "--create-home", *groups, UNPRIVILEGED_USER], check=True)
    needed = {}  # path -> the closed directory above it
    for path in (Path(sys.base_prefix).resolve(), REPO.resolve()):
        closed = next((p for p in reversed(path.parents) if not p.stat().st_mode & 0o001), None)
        if closed is not None:
            needed[path] = closed
    script = "set -e\n"
    for i, path in enumerate(needed):
        script += f'stage{i}=$(mktemp -d); mount --bind "{path}" "$stage{i}"\n'
    for closed in sorted(set(needed.values())):
        script += f'mount -t tmpfs -o mode=755 restem-test "{closed}"\n'
    for i, path in enumerate(needed):
        script += f'mkdir -p "{path}"; mount --bind "$stage{i}" "{path}"\n'
    script += (f"exec setpriv --reuid={UNPRIVILEGED_USER} --regid={UNPRIVILEGED_USER} "
               '--init-groups "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="already unprivileged: the tests above cover it")
@pytest.mark.skipif(os.environ.get("RESTEM_TEST_UNPRIVILEGED") == "1", reason="the inner run")
def test_as_an_unprivileged_user(backend: str) -> None:
    """The hostile programs, the identity check and the state checks again, with the sandbox
    started by an ordinary user (bubblewrap then maps the jail onto that user's uid)."""
    env = {"PATH": os.environ["PATH"], "HOME": f"/home/{UNPRIVILEGED_USER}", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "RESTEM_TEST_UNPRIVILEGED": "1"}
    selected = "above_core_count or host_root or state_crosses or earlier_jobs"
    command = unprivileged_command([
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", __file__,
        "-k", f"({selected}) and {'docker' if backend == 'docker' else 'bwrap'}"])
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    tail = (run.stdout + run.stderr)[-3000:]
    assert run.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail, tail
