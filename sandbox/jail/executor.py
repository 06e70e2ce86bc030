"""The in-jail executor: reads framed jobs, forks one child per job, answers each with a frame.

It runs inside each warm container (or bubblewrap jail), normally as PID 1 of its own pid
namespace. The child for the next job is forked and prepared ahead (`Standby`): a new
session, a parent-death signal, the working directory, pipes for stdin/stdout/stderr (and
fd 3 for results), every other descriptor closed. Children are forked by the `Zygote`, a
copy of the executor made before it read any job, never by the executor itself; what is the
same for every child is done once there (the fixed environment, the standard streams'
objects, the seccomp filter, which every child inherits). A child inherits its parent's whole
memory (the stack frames, and freed buffers too), and the executor's holds earlier jobs:
other requests' programs, their test code and its expected values, their output. When the
job arrives on its pipe, the child sets the job's rlimits and runs the untrusted program. The parent
enforces the deadlines from outside (CPU time from /proc, a wall limit against sleepers),
drains the pipes with a cap, and when the child is gone kills everything the job left.

The executor judges nothing: it reports raw observations (status, exit code or signal, CPU
and wall time, peak memory, capped output, and for call jobs the typed JSON lines the child
wrote). Expected outputs never come in here.

Wire format: each frame is a 4-byte big-endian length and a UTF-8 JSON object, on stdin and
stdout, or on a unix socket (`open_control`).
Jobs: {"op": "script", "program", "stdin", "limits"} runs the program as __main__;
{"op": "calls", "program", "calls": [[name, [encoded args]], ...], "limits"} defines the
program as a module and calls its functions, one result line per call on fd 3;
{"op": "tests", "test", "known", "judge", "limits"} runs a round of a request's test code
(`testcode.py`) in a child of its own, never the candidate's, and writes its answer on fd 3;
{"op": "ping"} answers {"pong": pid}. Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import io
import json
import os
import resource
import select
import signal
import site
import socket
import struct
import sys
import time
import traceback
import types
import typing

import seccomp
import testcode
import values

# Imported once here so that every forked child inherits them instead of importing them
# again (HumanEval prompts import typing). Modules that fail to import are skipped. Not
# hashlib: its libcrypto adds to every fork's cost, and 2 of 1,592 HumanEval programs and
# real MBPP samples import it (bench/workloads.py).
PRELOAD = [
    "array", "bisect", "calendar", "cmath", "collections", "collections.abc", "copy",
    "dataclasses", "datetime", "decimal", "enum", "fractions", "functools", "heapq",
    "itertools", "math", "numbers", "operator", "random", "re", "statistics", "string",
    "textwrap", "typing", "unicodedata",
]

EXIT_MEMORY = 86  # the child's own marker for MemoryError (program output cannot fake a pass)
STDERR_KEEP = 16 * 1024
RESULTS_CAP = 64 * 1024 * 1024
POLL_S = 0.02
TICKS = os.sysconf("SC_CLK_TCK")
WORK_ROOT = "/tmp"  # a private tmpfs in the jails; the local backend passes its own directory

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
BASE_ADDRESS_SPACE = 0  # the executor's own size after the imports; memory limits add to it


# ---------------------------------------------------------------- framing


def read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_raw_frame(fd: int) -> bytes | None:
    head = read_exact(fd, 4)
    return None if head is None else read_exact(fd, struct.unpack(">I", head)[0])


def write_frame(fd: int, message: dict) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data) :]


# ---------------------------------------------------------------- the child


def child_main(pipes: dict[str, tuple[int, int]], workdir: str) -> None:
    """Runs in the forked child: prepares, waits for its job on fd 4, runs it; never returns."""
    try:
        os.setsid()
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the zygote dies with us
        os.chdir(workdir)
        os.dup2(pipes["stdin"][0], 0)
        os.dup2(pipes["stdout"][1], 1)
        os.dup2(pipes["stderr"][1], 2)
        os.dup2(pipes["results"][1], 3)
        os.dup2(pipes["job"][0], 4)
        os.closerange(5, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # a file over the size limit ends the job
        sys.argv = ["program"]
        results = io.FileIO(3, "w", closefd=False)
        with io.FileIO(4, "r") as job_pipe:
            job = json.loads(job_pipe.readall())
        set_limits(job["limits"])
    except BaseException:
        os.write(2, f"executor: child set-up failed\n{traceback.format_exc()}".encode())
        os._exit(125)
    if job["op"] == "tests":
        os._exit(answer_test_code(job, results))
    try:
        code = compile(job["program"], "program.py", "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError) as exc:
        results.write(json.dumps({"compile_error": f"{type(exc).__name__}: {exc}"}).encode())
        os._exit(1)
    results.write(b'{"compiled":true}\n')
    status = 0
    try:
        if job["op"] == "script":
            os.close(3)  # the program cannot write observations about itself
            module = types.ModuleType("__main__")
            module.__file__ = "program.py"
            sys.modules["__main__"] = module
            exec(code, module.__dict__)
        else:
            module = types.ModuleType("solution")
            sys.modules["solution"] = module
            exec(code, module.__dict__)
            answer_calls(module, job["calls"], results)
    except SystemExit as exc:
        status = exit_status(exc.code)
    except MemoryError:
        status = EXIT_MEMORY
    except BaseException:
        traceback.print_exc()
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        status = status or 1
    os._exit(status)


def answer_test_code(job: dict, results: io.FileIO) -> int:
    """A round of a request's test code (`testcode.answer`): one answer line on fd 3."""
    results.write(b'{"compiled":true}\n')
    try:
        line = json.dumps(testcode.answer(job), separators=(",", ":")).encode()
    except MemoryError:
        return EXIT_MEMORY
    results.write(line + b"\n")
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        return 1
    return 0


def exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def answer_calls(module: types.ModuleType, calls: list, results: io.FileIO) -> None:
    """One result line per call: {"ok": value} or {"raise": "Type: message"}, and its CPU time."""
    solution_class = getattr(module, "Solution", None)
    instance = None
    for name, args in calls:
        start = time.process_time()
        try:
            fn = getattr(module, name, None)
            if fn is None and solution_class is not None:
                instance = instance if instance is not None else solution_class()
                fn = getattr(instance, name)
            if fn is None:
                raise NameError(f"name {name!r} is not defined")
            value = fn(*values.decode(args))
            line = {"ok": values.encode(value)}
        except MemoryError:
            raise
        except values.EncodeError as exc:
            line = {"unencodable": str(exc)}
            with contextlib.suppress(Exception):  # `assert candidate(...)` needs no more
                line["truthy"] = bool(value)
        except Exception as exc:
            line = {"raise": f"{type(exc).__name__}: {str(exc)[:500]}"}
        line["cpu_s"] = round(time.process_time() - start, 6)
        results.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")


def set_limits(limits: dict) -> None:
    cpu = int(limits["cpu_s"]) + 1  # backstop; the parent's CPU deadline comes first
    memory = BASE_ADDRESS_SPACE + limits["memory_mb"] * 2**20
    pairs = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2),
        (resource.RLIMIT_NOFILE, (limits["open_files"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    for which, value in pairs:
        resource.setrlimit(which, value)


def own_address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


# ---------------------------------------------------------------- the parent


PIPES = ("stdin", "stdout", "stderr", "results", "job")
PARENT_ENDS = {"stdin": 1, "stdout": 0, "stderr": 0, "results": 0, "job": 1}  # pipe index
# Output pipes this large hold what nearly every job writes, so the child never waits for us
# and we read them once, at its end (and on each POLL_S tick), instead of waking on every
# write: a call job writes a line per call. Pipes of the default size (stderr, or one the
# kernel kept small: pipe pages count against the uid's quota) are watched as they fill.
OUTPUTS = ("stdout", "results")
PIPE_BYTES = 256 * 1024
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032


class Standby:
    """A child forked and prepared before its job arrives, so that the fork and the set-up
    overlap with the scorer's turnaround instead of adding to every job's latency. Our
    child (the zygote's fork, handed to us), with the parent ends of its pipes."""

    def __init__(self, pid: int, ends: dict[str, int]) -> None:
        self.pid, self.ends = pid, ends

    def start(self, raw_job: bytes) -> None:
        """Hand over the job; the child starts as soon as the pipe closes."""
        job_fd = self.ends.pop("job")
        view = memoryview(raw_job)
        while view:
            view = view[os.write(job_fd, view) :]
        os.close(job_fd)

    def close_parent_ends(self) -> None:
        for fd in self.ends.values():
            with contextlib.suppress(OSError):
                os.close(fd)


class Zygote:
    """The process that forks every job's child, made before any job was read (see the
    module docstring). Told to (`request`: only once every process of the last job is gone,
    so that none can touch the new child), it forks a standby and hands it to us
    (`standby`), waits for it to end and reports its wait status unasked (`reaped`). Only
    pids, pipe ends and wait statuses cross, one message each, on a SOCK_SEQPACKET socket,
    and we never wait for an answer to a request. The child is its child; we kill its
    group, and its orphans come to us (PID 1, or a subreaper)."""

    def __init__(self) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.running = 0  # the standby handed to us whose end we have not read yet
        gc.freeze()  # the heap so far is never traced again: fewer copy-on-write faults
        self.pid = os.fork()
        if self.pid == 0:
            self.channel.close()
            zygote_main(theirs)
        theirs.close()

    def request(self) -> None:
        """Ask for the next standby (after the last job's processes are all gone)."""
        self.channel.sendall(b"f")

    def standby(self) -> Standby:
        """The requested child; OSError when the zygote could not fork one."""
        message, fds, _, _ = socket.recv_fds(self.channel, 64, len(PIPES))
        if message[:1] != b"s" or len(message) != 9 or len(fds) != len(PIPES):
            for fd in fds:
                os.close(fd)
            raise OSError("the zygote did not hand over a child")
        self.running = struct.unpack_from("q", message, 1)[0]
        return Standby(self.running, dict(zip(PIPES, fds, strict=True)))

    def reaped(self) -> tuple[int, Usage]:
        """Wait for the running standby to end: its wait status and resource usage."""
        message = self.channel.recv(64)
        if message[:1] != b"r" or len(message) != 1 + REAPED.size:
            raise OSError("the zygote did not report its child's end")
        self.running = 0
        status, utime, stime, maxrss = REAPED.unpack_from(message, 1)
        return status, Usage(utime, stime, maxrss)


class Usage(typing.NamedTuple):
    ru_utime: float
    ru_stime: float
    ru_maxrss: int


REAPED = struct.Struct("qddq")  # wait status, user and system seconds, peak RSS (KiB)


def zygote_main(channel: socket.socket) -> None:
    """For each request on `channel`: fork a prepared child, hand it over, wait for it to end
    and report its wait status (or report that the fork failed). Never returns."""
    try:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        keep = channel.fileno()
        os.closerange(3, keep)  # the control channel above all
        os.closerange(keep + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        standard_streams()
        # Once here rather than in every child: each child inherits the filter.
        seccomp.install((os.getppid(), os.getpid()))
        workdir = os.path.join(WORK_ROOT, "job")
        while channel.recv(1) == b"f":
            pipes: dict[str, tuple[int, int]] = {}
            try:
                for name in PIPES:
                    pipes[name] = os.pipe()
                for name in OUTPUTS:
                    with contextlib.suppress(OSError):  # refused past the user's pipe quota
                        fcntl.fcntl(pipes[name][1], F_SETPIPE_SZ, PIPE_BYTES)
                pid = os.fork()
            except OSError:  # out of processes or descriptors: the executor cleans up
                for pair in pipes.values():
                    os.close(pair[0])
                    os.close(pair[1])
                channel.sendall(b"x")
                continue
            if pid == 0:
                child_main(pipes, workdir)
            ends = [pipes[name][PARENT_ENDS[name]] for name in PIPES]
            socket.send_fds(channel, [b"s" + struct.pack("q", pid)], ends)
            for r, w in pipes.values():
                os.close(r)
                os.close(w)
            _, status, usage = os.wait4(pid, 0)
            channel.sendall(b"r" + REAPED.pack(status, usage.ru_utime, usage.ru_stime,
                                                usage.ru_maxrss))
    except BaseException:
        traceback.print_exc()
    os._exit(0)


def standard_streams() -> None:
    """sys.stdin, sys.stdout and sys.stderr on fds 0, 1 and 2, made once for every child to
    inherit (each child puts its job's pipes on those fds). Made on a pipe, as a job's are,
    so that they do not take themselves for seekable; nothing is ever written to them here."""
    read_end, write_end = os.pipe()
    os.dup2(read_end, 0)
    os.dup2(write_end, 1)
    os.close(read_end)
    os.close(write_end)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r")), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w")), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w")), encoding="utf-8", errors="backslashreplace",
        line_buffering=True,
    )


def run_job(job: dict, raw_job: bytes, standby: Standby, zygote: Zygote) -> dict:
    # The standby spent CPU on its set-up before the job existed; that is not the job's.
    setup_cpu = setup_cpu_seconds(standby.pid)
    start = time.monotonic()
    try:
        standby.start(raw_job)
        observed = supervise(standby.pid, job, job["limits"], standby.ends, start, setup_cpu,
                             zygote)
    finally:
        standby.close_parent_ends()
    observed["leftovers"] = kill_leftovers(zygote.pid)
    reset_scratch(os.path.join(WORK_ROOT, "job"))
    return observed


def supervise(pid: int, job: dict, limits: dict, ends: dict, start: float,
              setup_cpu: float, zygote: Zygote) -> dict:
    stdin_fd = ends.pop("stdin")
    streams = {ends[n]: n for n in ("stdout", "stderr", "results")}
    readers = dict(streams)  # those not at EOF yet
    caps = {"stdout": limits["output_bytes"], "stderr": STDERR_KEEP, "results": RESULTS_CAP}
    data = {n: bytearray() for n in readers.values()}
    pending = job.get("stdin", "").encode()
    for fd in [stdin_fd, *streams]:
        os.set_blocking(fd, False)
    if not pending:
        os.close(stdin_fd)
        stdin_fd = -1
    ended = zygote.channel.fileno()  # readable when the zygote has reaped the child
    watched = [fd for fd in readers if fcntl.fcntl(fd, F_GETPIPE_SZ) < PIPE_BYTES]
    wall_limit = limits["wall_s"]
    verdict, rusage, wait_status = None, None, None
    try:
        while True:
            wait_for = [ended, *(fd for fd in watched if fd in readers)]
            writers = [stdin_fd] if stdin_fd >= 0 else []
            ready_r, ready_w, _ = select.select(wait_for, writers, [], POLL_S)
            if stdin_fd in ready_w:
                try:
                    pending = pending[os.write(stdin_fd, pending[: 1 << 16]) :]
                except BrokenPipeError:
                    pending = b""
                if not pending:
                    os.close(stdin_fd)
                    stdin_fd = -1
            for fd in list(readers):  # every wake: what the large pipes hold so far
                state = drain(fd, readers[fd], data, caps)
                if state == "eof":
                    del readers[fd]
                elif state == "over":
                    verdict = verdict or "OUTPUT_LIMIT"
            if ended in ready_r:
                wait_status, rusage = zygote.reaped()
                break
            if verdict:
                break
            used = cpu_seconds(pid) - setup_cpu
            if used >= limits["cpu_s"] or time.monotonic() - start >= wall_limit:
                verdict = "TIMEOUT"
                break
    finally:
        if stdin_fd >= 0:
            os.close(stdin_fd)
    if wait_status is None:  # we stopped it
        kill_job(pid)
        wait_status, rusage = zygote.reaped()
    wall = time.monotonic() - start
    for fd, name in readers.items():  # whatever is already buffered; never wait for EOF
        drain(fd, name, data, caps)
    if data["stdout"] and len(data["stdout"]) > caps["stdout"]:
        verdict = verdict or "OUTPUT_LIMIT"
    cpu = max(0.0, rusage.ru_utime + rusage.ru_stime - setup_cpu)
    return observation(verdict, wait_status, cpu, wall, rusage.ru_maxrss, data, caps, limits)


def drain(fd: int, name: str, data: dict, caps: dict) -> str:
    """Read what is there: "more", "eof", or "over" when stdout/results went over its cap."""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return "more"
        if not chunk:
            return "eof"
        room = caps[name] + 1 - len(data[name])
        if room > 0:
            data[name] += chunk[:room]
        if len(data[name]) > caps[name] and name != "stderr":
            return "over"


def observation(verdict, wait_status, cpu, wall, maxrss_kb, data, caps, limits) -> dict:
    exit_code = os.waitstatus_to_exitcode(wait_status)
    signum = -exit_code if exit_code < 0 else None
    lines = bytes(data["results"]).splitlines()
    try:
        head = json.loads(lines[0]) if lines else {}
        head = head if isinstance(head, dict) else {}
    except ValueError:
        head = {}
    if "compile_error" in head and verdict is None:
        verdict = "COMPILE_ERROR"
    if verdict is None:
        if signum in (signal.SIGXCPU,) or cpu >= limits["cpu_s"]:
            verdict = "TIMEOUT"
        elif signum == signal.SIGXFSZ:
            verdict = "OUTPUT_LIMIT"
        elif signum == signal.SIGKILL or exit_code == EXIT_MEMORY:
            verdict = "MEMORY_LIMIT"  # nobody but the kernel's OOM killer sends SIGKILL here
        elif exit_code == 125:
            verdict = "SANDBOX_ERROR"
        elif exit_code != 0:
            verdict = "RUNTIME_ERROR"
        else:
            verdict = "PASS"
    return {
        "status": verdict,
        "exit_code": exit_code if signum is None else None,
        "signal": signum,
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "max_rss_kb": maxrss_kb,
        "stdout": bytes(data["stdout"][: caps["stdout"]]).decode("utf-8", "replace"),
        "stderr": bytes(data["stderr"][: caps["stderr"]]).decode("utf-8", "replace"),
        "stdout_truncated": len(data["stdout"]) > caps["stdout"],
        "compile_error": head.get("compile_error"),
        "results": [line.decode("utf-8", "replace") for line in lines[1:]],
    }


def read_proc(path: str) -> bytes:
    """A /proc file's bytes (plain system calls: a Python file object costs more than the
    read, and this runs several times per job); b"" when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 16):  # to the end: a fork bomb's children list is long
            chunks.append(chunk)
    except OSError:
        return b""
    finally:
        os.close(fd)
    return b"".join(chunks)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the child and its waited-for children, from /proc."""
    fields = read_proc(f"/proc/{pid}/stat").rsplit(b")", 1)[-1].split()
    return sum(int(x) for x in fields[11:15]) / TICKS if len(fields) > 14 else 0.0


def setup_cpu_seconds(pid: int) -> float:
    """CPU time of a waiting standby, in nanosecond precision (/proc/<pid>/schedstat counts
    its one thread), else from /proc/<pid>/stat in clock ticks."""
    try:
        return int(read_proc(f"/proc/{pid}/schedstat").split()[0]) / 1e9
    except (ValueError, IndexError):
        return cpu_seconds(pid)


def kill_job(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError):
            target()


def kill_leftovers(zygote: int) -> int:
    """Kill and reap every process the job left; returns how many there were. As PID 1 or
    subreaper we are the parent of every orphan, so killing our children (but the zygote)
    until none is left reaches them all: each round's grandchildren are the next round's
    children."""
    found = 0
    for _ in range(100):
        pids = descendants(zygote)
        if not pids:
            return found
        found = max(found, len(pids))
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        reap(block=True)
    return found


def descendants(zygote: int) -> list[int]:
    """Our remaining children but the zygote (as PID 1 or subreaper, orphans of a job become
    our children)."""
    reap(block=False)
    me = os.getpid()
    kids = []
    for task in os.listdir(f"/proc/{me}/task"):
        kids += [int(p) for p in read_proc(f"/proc/{me}/task/{task}/children").split()
                 if int(p) != zygote]
    return kids


def reap(block: bool) -> None:
    """Collect exited children (never the zygote: it only exits with us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        block = False  # one blocking wait, then collect the rest without blocking


def reset_scratch(workdir: str) -> None:
    """Leave WORK_ROOT holding one empty, private job directory, whatever the job did to it.
    WORK_ROOT is the only place a job can write (both jails' roots are read-only), so this is
    what keeps one job's files from the next."""
    if os.stat(WORK_ROOT).st_uid == os.getuid():  # the jail's own tmpfs: a job may chmod it
        os.chmod(WORK_ROOT, 0o700)
    if os.listdir(WORK_ROOT) == ["job"] and not os.listdir(workdir):
        os.chmod(workdir, 0o700)
        return  # the common case: nothing written (cheaper than rmdir and mkdir each job)
    for name in os.listdir(WORK_ROOT):
        target = os.path.join(WORK_ROOT, name)
        if os.path.isdir(target) and not os.path.islink(target):
            remove_tree(target)
        else:
            os.unlink(target)
    os.mkdir(workdir, 0o700)


def remove_tree(path: str) -> None:
    """Remove the directory `path` and all under it, whatever a job made of it: any depth
    (3.11's shutil.rmtree recurses, so 1,000 nested directories raised RecursionError), paths
    longer than PATH_MAX (we descend with chdir and relative names), any modes. No job runs
    while this does: its processes are gone."""
    home = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chmod(path, 0o700)
        os.chdir(path)
        below: list[str] = []  # the names we descended through
        while True:
            os.chmod(".", 0o700)
            subdir = None
            for entry in list(os.scandir(".")):
                if entry.is_dir(follow_symlinks=False):
                    subdir = entry.name
                    break
                os.unlink(entry.name)
            if subdir is not None:
                os.chmod(subdir, 0o700)
                os.chdir(subdir)
                below.append(subdir)
            elif below:
                os.chdir("..")
                os.rmdir(below.pop())
            else:
                break
    finally:
        os.fchdir(home)
        os.close(home)
    os.rmdir(path)


# ---------------------------------------------------------------- main loop


def open_control() -> tuple[int, int]:
    """The control channel's (read, write) descriptors, at 64 or above and close-on-exec.
    When started with a socket path (argv[2]) and a nonce (the docker backend), a unix
    socket the host listens on, proven ours by sending the nonce first: it skips Docker's
    stdio relay (the CLI, the daemon and the shim, both ways, on every job). When the socket
    cannot be reached (an engine that does not see the host's directory), stdin and stdout,
    as for the other backends."""
    path = sys.argv[2] if len(sys.argv) > 2 else ""
    nonce = os.environ.get("RESTEM_CONTROL_NONCE", "")
    if path and nonce:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(path)
                sock.sendall(nonce.encode())
                fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 64)
            return fd, fd
        except OSError:
            pass
    return fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 64), fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 64)


def main() -> None:
    global WORK_ROOT, BASE_ADDRESS_SPACE
    if len(sys.argv) > 1:
        WORK_ROOT = sys.argv[1]
    # Moved out of the way of the jobs' descriptors; jobs never see it (fds >= 5 are closed).
    control_in, control_out = open_control()
    # Started without site (-S): the builtins it adds (exit, quit, help, ...) still exist for
    # programs, without the site-packages and .pth files of the machine.
    site.setquit()
    site.setcopyright()
    site.sethelper()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
    # The fixed environment every job sees, set once here (cheaper than per child).
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": os.path.join(WORK_ROOT, "job"),
                       "LANG": "C.UTF-8"})
    BASE_ADDRESS_SPACE = own_address_space()
    reset_scratch(os.path.join(WORK_ROOT, "job"))
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace or /proc/<pid>/mem from jobs
    if os.getpid() != 1:
        _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)
    zygote = Zygote()  # before any job is read
    zygote.request()
    write_frame(control_out, {"ready": os.getpid(), "python": sys.version.split()[0]})
    standby = next_standby(zygote)
    while True:
        raw_job = read_raw_frame(control_in)
        if raw_job is None:
            return
        job = json.loads(raw_job)
        if job.get("op") == "ping":  # health, and what a finished job may have left
            scratch = sorted(os.listdir(WORK_ROOT))
            if scratch == ["job"]:
                scratch = os.listdir(os.path.join(WORK_ROOT, "job"))
            others = descendants(zygote.pid)  # (the standby is the zygote's child)
            write_frame(control_out, {"pong": os.getpid(), "processes": len(others),
                                      "scratch": scratch})
            continue
        try:
            reply = run_job(job, raw_job, standby, zygote)
        except Exception:
            reply = {"status": "SANDBOX_ERROR", "error": traceback.format_exc()[-2000:]}
            kill_job(standby.pid)  # the job's child, if it still runs, and its group
            if zygote.running == standby.pid:
                with contextlib.suppress(OSError):
                    zygote.reaped()
            kill_leftovers(zygote.pid)
        zygote.request()  # the job's processes are all gone (run_job killed what it left)
        write_frame(control_out, reply)
        standby = next_standby(zygote)


def next_standby(zygote: Zygote) -> Standby:
    """The requested child; when the zygote could not fork one (out of processes or memory),
    kill what jobs left and ask once more, else the worker ends."""
    try:
        return zygote.standby()
    except OSError:
        kill_leftovers(zygote.pid)
        zygote.request()
        return zygote.standby()


if __name__ == "__main__":
    main()
