"""Hostile programs for the sandbox tests, each with the status it must end in.

A program prints VIOLATION if the thing it tries actually works (or the test looks for
the secret it tries to steal). `kind` says how it runs: "execute" (a bare run), "stdio"
(one StdioTest asking for "42"), "call" (CallTest add(2, 3) == 5), or "assert" (HumanEval
style: check() asserting add(2, 3) == 5 and add(1, 1) == 2).

Kind "test_code" turns it around: the program is a correct `add`, and `program` is the
hostile *test code* of an AssertTest (in a service a request's tests are as untrusted as
its program). Where an attack can fail quietly, its check() asserts it failed (a VIOLATION
then shows up as FAIL with the marker); a test that exits, loops, allocates or raises on its
own account must end as INVALID_REQUEST (a broken test), never as the candidate's verdict.
These were written here, after the attacks in the issue that found the judge running test
code on the host (writing a host file as root, reading the token file, the Docker socket,
a daemon, os._exit, a spin, an allocation without bound, SystemExit, KeyboardInterrupt).
"""

from __future__ import annotations

from dataclasses import dataclass

MARK = "VIOLATION"
SECRET_ENV = "RESTEM_TEST_SECRET"
SECRET_VALUE = "s3cr3t-do-not-leak"
HOST_FILE = "/tmp/restem-test-code-was-here"  # hostile test code tries to create it
CORRECT_ADD = "def add(a, b):\n    return a + b\n"


@dataclass(frozen=True)
class Hostile:
    name: str
    kind: str
    expected: str
    program: str


def _p(text: str) -> str:
    return text.strip("\n") + "\n"


# A job leaves a process that watches the zygote for the next job's child, stops it and
# exits before the executor's sweep (a reviewer's finding: the zygote forked the next child as
# soon as it had reaped the last, before the job's leftovers were killed). The job's 4 MB of
# output gives it time. The next, unrelated job must not be the one that pays.
STOP_THE_NEXT_CHILD = _p("""
import os, signal, sys, time
zygote = os.getppid()
if os.fork() == 0:
    me, job = os.getpid(), os.getppid()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            kids = open(f"/proc/{zygote}/task/{zygote}/children").read().split()
        except OSError:
            break
        for pid in map(int, kids):
            if pid not in (me, job):
                os.kill(pid, signal.SIGSTOP)
                os._exit(0)
    os._exit(0)
sys.stdout.write("x" * (4 * 2**20 - 1))
""")

# A grandchild in a session of its own that sleeps on after its parent exited.
START_DAEMON = _p("""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1000)
    os._exit(0)
""")

# Every directory the job can create a file in: each read-write mount is walked (without
# crossing into other mounts, and skipping subtrees on read-only ones), /proc's pid entries
# excepted. Shared by the hostile programs below and the no-state-crosses-runs test.
WRITABLE_DIRS = _p("""
import os

def writable_dirs():
    found = []
    mounts = [line.split()[4] for line in open('/proc/self/mountinfo')]
    for mount in mounts:
        for root, subdirs, _ in os.walk(mount, onerror=lambda e: None):
            if os.statvfs(root).f_flag & os.ST_RDONLY:
                subdirs.clear()
                continue
            subdirs[:] = [d for d in subdirs if not (root == '/proc' and d.isdigit())
                          and os.path.join(root, d) not in mounts]
            probe = os.path.join(root, '.restem-probe')
            try:
                os.close(os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
            except OSError:
                continue
            os.unlink(probe)
            found.append(root)
    return sorted(set(found))
""")

PROGRAMS = [
    # ---- time
    Hostile("busy_loop", "execute", "TIMEOUT", "while True:\n    pass"),
    Hostile("blocking_read", "execute", "TIMEOUT", "import os\nr, w = os.pipe()\nos.read(r, 1)"),
    Hostile("sleep", "execute", "TIMEOUT", "import time\ntime.sleep(1000)"),
    Hostile("ignore_signals", "execute", "TIMEOUT", _p("""
import signal
for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGINT, signal.SIGXCPU, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
while True:
    pass
""")),
    Hostile("mask_signals", "execute", "TIMEOUT", _p("""
import signal
signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
while True:
    pass
""")),
    Hostile("stop_self", "execute", "TIMEOUT", _p("""
import os, signal
os.kill(os.getpid(), signal.SIGSTOP)
""")),
    Hostile("regex_backtracking", "execute", "TIMEOUT", _p("""
import re
re.match(r'(a+)+$', 'a' * 64 + 'b')
""")),
    Hostile("close_stdout_and_spin", "execute", "TIMEOUT", _p("""
import os
os.close(1)
while True:
    pass
""")),
    # ---- processes and threads
    Hostile("fork_bomb", "execute", "TIMEOUT", _p("""
import os
for _ in range(100000):
    try:
        os.fork()
    except OSError:
        break
while True:
    pass
""")),
    Hostile("thread_bomb", "execute", "TIMEOUT", _p("""
import threading
def spin():
    while True:
        pass
for _ in range(100000):
    try:
        threading.Thread(target=spin, daemon=True).start()
    except (RuntimeError, MemoryError):
        break
while True:
    pass
""")),
    Hostile("thread_outlives_main", "stdio", "PASS", _p("""
import threading, time
threading.Thread(target=lambda: time.sleep(1000)).start()
print(42)
""")),
    Hostile("daemon_child_outlives", "stdio", "PASS", START_DAEMON + "print(42)\n"),
    Hostile("spinning_grandchild_holds_stdout", "stdio", "PASS", _p("""
import os, sys
sys.stdout.write("42\\n")
sys.stdout.flush()
if os.fork() == 0:
    os.setsid()
    while True:
        pass
""")),
    # ---- memory, disk, output
    Hostile("memory_bomb_at_once", "execute", "MEMORY_LIMIT", "x = bytearray(8 * 2**30)"),
    Hostile("memory_bomb_growing", "execute", "MEMORY_LIMIT", _p("""
chunks = []
while True:
    chunks.append(bytearray(50 * 2**20))
""")),
    Hostile("one_huge_file", "execute", "OUTPUT_LIMIT", _p("""
with open("fill", "wb") as f:
    while True:
        f.write(b"0" * 2**20)
""")),
    Hostile("disk_fill_many_files", "execute", "RUNTIME_ERROR", _p("""
i = 0
while True:
    with open(f"f{i}", "wb") as f:
        f.write(b"0" * 2**20)
    i += 1
""")),
    Hostile("stdout_flood", "execute", "OUTPUT_LIMIT", "while True:\n    print('x' * 1000)"),
    Hostile("stdout_flood_os_write", "execute", "OUTPUT_LIMIT", _p("""
import os
while True:
    os.write(1, b"y" * 65536)
""")),
    # ---- network
    Hostile("network_outside", "execute", "RUNTIME_ERROR", _p("""
import socket
socket.create_connection(("1.1.1.1", 80), timeout=2)
print("VIOLATION")
""")),
    Hostile("network_loopback_listen", "execute", "RUNTIME_ERROR", _p("""
import socket
s = socket.socket()
s.bind(("127.0.0.1", 8080))
s.listen()
print("VIOLATION")
""")),
    Hostile("docker_socket", "execute", "RUNTIME_ERROR", _p("""
import socket
s = socket.socket(socket.AF_UNIX)
s.connect("/var/run/docker.sock")
print("VIOLATION")
""")),
    # ---- secrets and the executor
    Hostile("read_shadow", "execute", "RUNTIME_ERROR", _p("""
print(open('/etc/shadow').read())
print('VIOLATION')
""")),
    Hostile("read_host_secret_file", "execute", "RUNTIME_ERROR", _p("""
import glob
found = glob.glob("/tmp/restem-host-secret-*")
print(open(found[0]).read() if found else "")
print("VIOLATION" if found else "")
raise SystemExit(1)
""")),
    Hostile("environment_secrets", "execute", "PASS", "import os\nprint(dict(os.environ))"),
    Hostile("proc_executor_memory", "execute", "RUNTIME_ERROR", _p("""
import os
ppid = os.getppid()
with open(f"/proc/{ppid}/mem", "rb") as f:
    f.read(1)
print("VIOLATION")
""")),
    Hostile("proc_executor_environ", "execute", "RUNTIME_ERROR", _p("""
import os
print(open(f"/proc/{os.getppid()}/environ", "rb").read())
print("VIOLATION")
""")),
    Hostile("ptrace_executor", "execute", "RUNTIME_ERROR", _p("""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, os.getppid(), 0, 0) == 0:
    print("VIOLATION")
raise OSError(ctypes.get_errno(), "ptrace refused")
""")),
    Hostile("kill_parent", "execute", "RUNTIME_ERROR", _p("""
import os
os.kill(os.getppid(), 9)
print('VIOLATION')
""")),
    # Signals by the other system calls that take a pid or a pidfd (a reviewer's finding:
    # only kill, tkill and tgkill were guarded). Signal 0 probes without sending anything.
    Hostile("signal_executor_and_zygote_other_ways", "execute", "RUNTIME_ERROR", _p("""
import ctypes, os, platform
libc = ctypes.CDLL(None, use_errno=True)
queue, tgqueue = {"x86_64": (129, 297), "aarch64": (138, 240)}[platform.machine()]
zygote = os.getppid()
executor = int(open(f"/proc/{zygote}/stat").read().rsplit(")", 1)[1].split()[1])
info = (ctypes.c_int * 32)(0, 0, -1)  # si_signo, si_errno, si_code = SI_QUEUE
for target in (zygote, executor):
    pidfd = libc.syscall(434, target, 0)  # pidfd_open
    if pidfd >= 0 and libc.syscall(424, pidfd, 0, None, 0) == 0:  # pidfd_send_signal
        print("VIOLATION pidfd_send_signal", target)
    if libc.syscall(queue, target, 0, info) == 0:  # rt_sigqueueinfo
        print("VIOLATION rt_sigqueueinfo", target)
    if libc.syscall(tgqueue, target, target, 0, info) == 0:  # rt_tgsigqueueinfo
        print("VIOLATION rt_tgsigqueueinfo", target)
raise OSError(ctypes.get_errno(), "signals refused")
""")),
    Hostile("kill_everyone", "execute", "RUNTIME_ERROR", _p("""
import os
os.kill(-1, 9)
print('VIOLATION')
""")),
    Hostile("exec_a_shell", "execute", "RUNTIME_ERROR", _p("""
import os
os.execv("/usr/bin/python3", ["python3", "-c", "print('VIOLATION')"])
""")),
    Hostile("new_namespace", "execute", "RUNTIME_ERROR", _p("""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) == 0:
    print("VIOLATION")
raise OSError(ctypes.get_errno(), "unshare refused")
""")),
    Hostile("write_read_only_root", "execute", "RUNTIME_ERROR", _p("""
open('/usr/evil', 'w').write('x')
print('VIOLATION')
""")),
    # ---- host identity: a job is never host root, and no host-global setting is writable
    Hostile("host_uid_from_uid_map", "execute", "PASS", _p("""
import os
uid = os.getuid()
for line in open('/proc/self/uid_map'):
    inside, outside, count = map(int, line.split())
    if inside <= uid < inside + count and outside + uid - inside == 0:
        print('VIOLATION: the job runs as host uid 0')
""")),
    Hostile("sysctl_write_current_value", "execute", "RUNTIME_ERROR", _p("""
path = '/proc/sys/kernel/printk_ratelimit'
value = open(path).read()
with open(path, 'w') as f:
    f.write(value)  # the value it already has: harmless if this ever succeeds
print('VIOLATION: wrote a host sysctl')
""")),
    Hostile("core_pattern_open_for_write", "execute", "RUNTIME_ERROR", _p("""
import os
os.close(os.open('/proc/sys/kernel/core_pattern', os.O_WRONLY))
print('VIOLATION: core_pattern opens for writing')
""")),
    Hostile("sysrq_trigger_open_for_write", "execute", "RUNTIME_ERROR", _p("""
import os
os.close(os.open('/proc/sysrq-trigger', os.O_WRONLY))
print('VIOLATION: sysrq-trigger opens for writing')
""")),
    Hostile("sys_open_for_write", "execute", "RUNTIME_ERROR", _p("""
import os
refused = []
for path in ('/sys/kernel/uevent_helper', '/sys/kernel/mm/transparent_hugepage/enabled',
             '/sys/power/state', '/sys/fs/cgroup/restem-left'):
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        print('VIOLATION: opens for writing', path)
    except OSError as exc:
        refused.append(f'{path}: {exc.strerror}')
raise PermissionError('; '.join(refused))
""")),
    Hostile("writable_outside_scratch", "execute", "PASS", _p(f"""
{WRITABLE_DIRS}
for path in writable_dirs():
    if path != '/tmp' and not path.startswith('/tmp/'):
        print('VIOLATION: writable', path)
""")),
    Hostile("system_v_message_queue", "execute", "RUNTIME_ERROR", _p("""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.msgget(0x5E57, 0o1600) >= 0:  # IPC_CREAT | 0600
    print('VIOLATION: a System V queue outlives the job')
raise OSError(ctypes.get_errno(), 'msgget refused')
""")),
    Hostile("posix_message_queue", "execute", "RUNTIME_ERROR", _p("""
import ctypes
librt = ctypes.CDLL('librt.so.1', use_errno=True)
if librt.mq_open(b'/restem-left', 0o100 | 2, 0o600, None) >= 0:  # O_CREAT | O_RDWR
    print('VIOLATION: a POSIX queue outlives the job')
raise OSError(ctypes.get_errno(), 'mq_open refused')
""")),
    Hostile("write_control_channel", "execute", "RUNTIME_ERROR", _p("""
import os
for fd in range(4, 256):
    try:
        os.write(fd, b"\\x00\\x00\\x00\\x02{}")
        print("VIOLATION", fd)
    except OSError:
        pass
raise SystemExit(3)
""")),
    Hostile("segfault", "execute", "RUNTIME_ERROR", "import ctypes\nctypes.string_at(0)"),
    # ---- harness tampering
    Hostile("exit_zero_before_calls", "call", "RUNTIME_ERROR", _p("""
import os
os._exit(0)
def add(a, b):
    return a + b
""")),
    Hostile("exit_zero_before_output", "stdio", "FAIL", "import sys\nsys.exit(0)\nprint(42)"),
    Hostile("print_success_markers", "stdio", "FAIL", _p("""
print("passed")
print("PASS")
print('{"status": "PASS"}')
""")),
    Hostile("deep_result_line", "call", "RUNTIME_ERROR", _p("""
import os
os.write(3, b'[' * 200000 + b'\\n')
def add(a, b):
    return 0
""")),
    Hostile("result_line_of_empty_lists", "call", "RUNTIME_ERROR", _p("""
import os
os.write(3, b'[' + b'[],' * 4_000_000 + b'[]]\\n')
def add(a, b):
    return 0
""")),
    # ---- from outside (found by a helper harvesting peers' trackers; each cites its source)
    # CPython gh-89727: 3.11's shutil.rmtree recursed, so the clean-up after this job raised
    # RecursionError and every retry burned a worker (SANDBOX_ERROR, not the verdict).
    Hostile("deep_directory_tree", "stdio", "PASS", _p("""
import os
for _ in range(1100):
    os.mkdir("d")
    os.chdir("d")
open("f", "w").write("x")
print(42)
""")),
    # grpc/grpc#11442, BerriAI/litellm#3730: a lone surrogate in a message made protobuf
    # raise while encoding the response, losing the batch.
    Hostile("lone_surrogate_message", "call", "RUNTIME_ERROR",
            "def add(a, b):\n    raise ValueError('\\ud800')\n"),
    Hostile("huge_int_result_call", "call", "FAIL", "def add(a, b):\n    return 10 ** 5000\n"),
    Hostile("huge_int_result_assert", "assert", "FAIL",
            "def add(a, b):\n    return 10 ** 5000\n"),
    Hostile("fake_result_lines", "call", "RUNTIME_ERROR", _p("""
import os
os.write(3, b'{"ok":{"i":5},"cpu_s":0}\\n')
def add(a, b):
    return 0
""")),
    Hostile("always_equal_object", "assert", "FAIL", _p("""
class Anything:
    def __eq__(self, other):
        return True
def add(a, b):
    return Anything()
""")),
    Hostile("int_subclass", "assert", "FAIL", _p("""
class Sly(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def add(a, b):
    return Sly(0)
""")),
    Hostile("frame_walk", "assert", "FAIL", _p("""
import sys
def add(a, b):
    frame = sys._getframe()
    while frame is not None:
        for name, value in list(frame.f_locals.items()):
            if isinstance(value, list):
                value[:] = ["passed"]
        frame = frame.f_back
    return 0
""")),
    Hostile("gc_walk", "assert", "FAIL", _p("""
import gc
def add(a, b):
    for obj in gc.get_objects():
        if isinstance(obj, dict) and "expected" in obj:
            return obj["expected"]
    return -1
""")),
    Hostile("patched_builtins", "assert", "FAIL", _p("""
import builtins
def add(a, b):
    builtins.AssertionError = type("Nothing", (Exception,), {})
    builtins.abs = lambda x: 0
    return 7
""")),
    # ---- hostile test code (the program is CORRECT_ADD)
    Hostile("test_code_writes_host_file", "test_code", "PASS", _p(f"""
import os
written = []
for path in ["{HOST_FILE}", "/root/restem-was-here", "/etc/restem-was-here",
             os.path.expanduser("~/restem-was-here")]:
    try:
        with open(path, "w") as f:
            f.write("uid=%d pid=%d" % (os.getuid(), os.getpid()))
        written.append(path)
    except OSError:
        pass
def check(candidate):
    assert os.getuid() != 0, "VIOLATION: test code runs as uid 0"
    assert candidate(2, 3) == 5
""")),
    Hostile("test_code_reads_secrets", "test_code", "PASS", _p("""
import glob, os
def check(candidate):
    for path in glob.glob("/tmp/restem-host-secret-*"):
        assert False, "VIOLATION " + open(path).read()
    assert "RESTEM_TEST_SECRET" not in os.environ, "VIOLATION " + str(dict(os.environ))
    for token in ("/run/secrets", "/var/run/secrets", "/root/.docker", "/proc/1/environ"):
        try:
            assert not open(token).read(), "VIOLATION " + token
        except OSError:
            pass
    assert candidate(2, 3) == 5
""")),
    Hostile("test_code_docker_socket", "test_code", "PASS", _p("""
import socket
def check(candidate):
    for path in ("/var/run/docker.sock", "/run/docker.sock"):
        try:
            s = socket.socket(socket.AF_UNIX)
        except OSError:
            break
        try:
            s.connect(path)
        except OSError:
            continue
        assert False, "VIOLATION: connected to " + path
    assert candidate(2, 3) == 5
""")),
    Hostile("test_code_network", "test_code", "PASS", _p("""
import socket
def check(candidate):
    try:
        socket.create_connection(("1.1.1.1", 80), timeout=1)
    except OSError:
        pass
    else:
        assert False, "VIOLATION: network"
    assert candidate(2, 3) == 5
""")),
    Hostile("test_code_starts_daemon", "test_code", "PASS", START_DAEMON + _p("""
os.wait()
def check(candidate):
    assert candidate(2, 3) == 5
""")),
    Hostile("test_code_forges_calls_of_wrong_type", "test_code", "INVALID_REQUEST", _p("""
import os
os.write(3, b'{"calls":[1, null]}\\n')
os._exit(0)
def check(candidate):
    pass
""")),
    Hostile("test_code_os_exit", "test_code", "INVALID_REQUEST",
            "import os\nos._exit(0)\ndef check(candidate):\n    pass\n"),
    Hostile("test_code_sys_exit_in_check", "test_code", "INVALID_REQUEST",
            "import sys\ndef check(candidate):\n    sys.exit(0)\n"),
    Hostile("test_code_keyboard_interrupt", "test_code", "INVALID_REQUEST",
            "def check(candidate):\n    candidate(2, 3)\n    raise KeyboardInterrupt\n"),
    Hostile("test_code_spins", "test_code", "INVALID_REQUEST",
            "def check(candidate):\n    while True:\n        pass\n"),
    Hostile("test_code_spins_after_calls", "test_code", "INVALID_REQUEST",
            "def check(candidate):\n    assert candidate(2, 3) == 5\n    while True:\n"
            "        pass\n"),
    Hostile("test_code_sleeps", "test_code", "INVALID_REQUEST",
            "import time\ntime.sleep(1000)\ndef check(candidate):\n    pass\n"),
    Hostile("test_code_allocates", "test_code", "INVALID_REQUEST", _p("""
hoard = []
while True:
    hoard.append(bytearray(2**24))
def check(candidate):
    pass
""")),
    Hostile("test_code_fork_bomb", "test_code", "INVALID_REQUEST", _p("""
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
def check(candidate):
    pass
""")),
    Hostile("test_code_stdout_flood", "test_code", "INVALID_REQUEST",
            "while True:\n    print('x' * 1000)\ndef check(candidate):\n    pass\n"),
    Hostile("test_code_nested_expression", "test_code", "INVALID_REQUEST",
            "x = 1" + "+1" * 300_000 + "\ndef check(candidate):\n    pass\n"),
    Hostile("test_code_forges_deep_answer", "test_code", "INVALID_REQUEST", _p("""
import os
os.write(3, b'{"calls":["' + b'[' * 200000 + b'"]}\\n')
os._exit(0)
def check(candidate):
    pass
""")),
    Hostile("test_code_hooks_the_judge", "test_code", "PASS", _p("""
import builtins, gc, sys
for module in list(sys.modules.values()):
    for name in ("judge", "record", "answer", "run_check"):
        if hasattr(module, name):
            try:
                setattr(module, name, lambda *a, **k: ("pass", ""))
            except Exception:
                pass
builtins.AssertionError = type("Nothing", (Exception,), {})
def check(candidate):
    assert candidate(2, 3) == 5
""")),
    Hostile("settrace_swaps_check", "assert", "FAIL", _p("""
import sys
def tracer(frame, event, arg):
    if frame.f_code.co_name == "check":
        frame.f_globals["check"] = lambda candidate: None
    return tracer
sys.settrace(tracer)
def add(a, b):
    return 0
""")),
]

# Two jobs run one after the other on one worker: the first leaves a token in every
# directory it can write (and with `daemon`, starts a grandchild that outlives its run and
# writes again a moment later); the second looks for the token in every directory it can
# write. The test fills in `token` and `daemon` with str.format.
LEAVE_STATE = WRITABLE_DIRS + _p("""
import os, time
def leave():
    for path in writable_dirs():
        with open(os.path.join(path, 'restem-left-behind'), 'w') as f:
            f.write('{token}')
leave()
print(writable_dirs())
if {daemon}:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(0.3)
            leave()
            time.sleep(100)
        os._exit(0)
    os.wait()
""")

FIND_STATE = WRITABLE_DIRS + _p("""
import os, time
time.sleep(0.6)  # after the first job's daemon would have written
for path in writable_dirs():
    for root, _, files in os.walk(path):
        for name in files:
            try:
                text = open(os.path.join(root, name)).read()
            except OSError:
                continue
            if name == 'restem-left-behind' or '{token}' in text:
                print('VIOLATION: left behind', os.path.join(root, name))
print('looked in', writable_dirs())
""")

# A job looks for what earlier jobs on its worker handled: `{prefix}` followed by 32 hex
# digits, in every readable mapping of its own memory (live objects, freed buffers, stack
# frames), and through its stack frames (the executor's locals `job`, `reply`, `raw_job`).
# After METR's report of o3 reading the grader's answer off the call stack; this project's
# executor forked each child from a process that held the previous job (found here by a
# helper reading the executor as an attacker). The test fills in `prefix` with str.format.
FIND_EARLIER_JOBS = _p("""
import ctypes, re, sys
pattern = re.compile(re.escape(b'{prefix}') + rb'[0-9a-f]{{32}}')
found = set()
for line in open('/proc/self/maps'):
    fields = line.split()
    span, perms = fields[0], fields[1]
    if 'r' not in perms or (len(fields) > 5 and fields[5].startswith(('[vvar', '[vsys'))):
        continue
    start, end = (int(x, 16) for x in span.split('-'))
    try:
        found.update(pattern.findall(ctypes.string_at(start, end - start)))
    except Exception:
        pass
frame = sys._getframe()
while frame is not None:  # (child_main's own `job` is this job)
    for name in ('job', 'reply', 'raw_job'):
        if name in frame.f_locals and frame.f_code.co_name != 'child_main':
            found.add(('frame', frame.f_code.co_name, name))
    frame = frame.f_back
print('VIOLATION', sorted(map(str, found)) if found else 'nothing found')
""")

