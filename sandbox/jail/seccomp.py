"""The jobs' seccomp filter, built with ctypes and installed once in the zygote, whose every
forked child inherits it (the kernel copies a process's filters to its children, and no
process can remove one).

Denied (the call fails with EPERM, so the program sees an ordinary OSError): exec, ptrace
and cross-process memory access, namespace, mount and root changes, bpf, perf, keyrings,
clock setting, modules, reboot, swap, io_uring, userfaultfd, handle-based opens, sockets
outside AF_UNIX, and System V and POSIX message-queue IPC (their objects outlive the job in
the worker's IPC namespace, where the next job could read them). `clone` is refused when it
asks for a new namespace; `clone3` answers ENOSYS so the C library falls back to `clone`,
whose flags the filter can read.
`kill`, `tkill`, `tgkill`, `rt_sigqueueinfo` and `rt_tgsigqueueinfo` are refused for negative
pids (-1 is everyone; a job signals its own group with pid 0) and for the executor and its
zygote; `pidfd_send_signal`, whose target the filter cannot see, is refused.

fork stays allowed (os.fork, multiprocessing.Process; not multiprocessing's locks and pools,
which need a /dev/shm that no backend gives a job), and the pids cgroup (Docker's
--pids-limit, or the namespace backend's pids cgroup) bounds fork bombs, with the job's
deadline killing the rest.

This file runs inside the jail: standard library only.
"""

from __future__ import annotations

import ctypes
import platform
import struct

_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_KILL_PROCESS = 0x80000000
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_EPERM, _ENOSYS = 1, 38
_AF_UNIX = 1
_CLONE_NEW_MASK = 0x7E020080  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME

# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_JGE_K = 0x35
_RET_K = 0x06

# (audit arch, syscall numbers)
_ARCHES = {
    "x86_64": (
        0xC000003E,
        {
            "execve": 59, "execveat": 322, "ptrace": 101, "process_vm_readv": 310,
            "process_vm_writev": 311, "unshare": 272, "setns": 308, "mount": 165,
            "umount2": 166, "pivot_root": 155, "chroot": 161, "bpf": 321,
            "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249,
            "clock_settime": 227, "settimeofday": 164, "clock_adjtime": 305, "adjtimex": 159,
            "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
            "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
            "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
            "io_uring_register": 427, "kcmp": 312, "open_by_handle_at": 304,
            "name_to_handle_at": 303, "pidfd_getfd": 438, "pidfd_send_signal": 424,
            "process_madvise": 440,
            "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
            "fsmount": 432, "fspick": 433, "mount_setattr": 442, "personality": 135,
            "acct": 163, "quotactl": 179, "syslog": 103, "iopl": 172, "ioperm": 173,
            "sethostname": 170, "setdomainname": 171,
            "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65,
            "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70,
            "msgctl": 71, "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242,
            "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245,
        },
        {"socket": 41, "clone": 56, "clone3": 435, "kill": 62, "tkill": 200, "tgkill": 234,
         "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297},
    ),
    "aarch64": (
        0xC00000B7,
        {
            "execve": 221, "execveat": 281, "ptrace": 117, "process_vm_readv": 270,
            "process_vm_writev": 271, "unshare": 97, "setns": 268, "mount": 40,
            "umount2": 39, "pivot_root": 41, "chroot": 51, "bpf": 280,
            "perf_event_open": 241, "keyctl": 219, "add_key": 217, "request_key": 218,
            "clock_settime": 112, "settimeofday": 170, "clock_adjtime": 266, "adjtimex": 171,
            "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104,
            "kexec_file_load": 294, "reboot": 142, "swapon": 224, "swapoff": 225,
            "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
            "io_uring_register": 427, "kcmp": 272, "open_by_handle_at": 265,
            "name_to_handle_at": 264, "pidfd_getfd": 438, "pidfd_send_signal": 424,
            "process_madvise": 440,
            "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
            "fsmount": 432, "fspick": 433, "mount_setattr": 442, "personality": 92,
            "acct": 89, "quotactl": 60, "syslog": 116,
            "sethostname": 161, "setdomainname": 162,
            "shmget": 194, "shmat": 196, "shmctl": 195, "shmdt": 197, "semget": 190,
            "semop": 193, "semctl": 191, "semtimedop": 192, "msgget": 186, "msgsnd": 189,
            "msgrcv": 188, "msgctl": 187, "mq_open": 180, "mq_unlink": 181, "mq_timedsend": 182,
            "mq_timedreceive": 183, "mq_notify": 184, "mq_getsetattr": 185,
        },
        {"socket": 198, "clone": 220, "clone3": 435, "kill": 129, "tkill": 130, "tgkill": 131,
         "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240},
    ),
}


def _stmt(code: int, k: int) -> bytes:
    return struct.pack("HBBI", code, 0, 0, k & 0xFFFFFFFF)


def _jump(code: int, k: int, jt: int, jf: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _arg_low(n: int) -> int:
    return 16 + 8 * n  # offsetof(struct seccomp_data, args[n]), low 32 bits (little endian)


def build_filter(protected: tuple[int, ...]) -> list[bytes]:
    """The BPF program as a list of sock_filter records, for this machine's architecture."""
    arch, denied, special = _ARCHES[platform.machine()]
    errno_eperm = _SECCOMP_RET_ERRNO | _EPERM
    prog: list[bytes] = [
        _stmt(_LD_W_ABS, 4),  # seccomp_data.arch
        _jump(_JEQ_K, arch, 1, 0),
        _stmt(_RET_K, _SECCOMP_RET_KILL_PROCESS),
        _stmt(_LD_W_ABS, 0),  # seccomp_data.nr
        # x32 system calls (nr | 0x40000000) would bypass the numbers below.
        _jump(_JGE_K, 0x40000000, 0, 1),
        _stmt(_RET_K, _SECCOMP_RET_ERRNO | _ENOSYS),
    ]
    for nr in sorted(set(denied.values())):
        prog += [_jump(_JEQ_K, nr, 0, 1), _stmt(_RET_K, errno_eperm)]

    # clone3: its flags live in a struct the filter cannot read.
    prog += [_jump(_JEQ_K, special["clone3"], 0, 1), _stmt(_RET_K, _SECCOMP_RET_ERRNO | _ENOSYS)]
    # clone(flags, ...): refuse namespace flags.
    prog += [
        _jump(_JEQ_K, special["clone"], 0, 4),
        _stmt(_LD_W_ABS, _arg_low(0)),
        _jump(_JSET_K, _CLONE_NEW_MASK, 0, 1),
        _stmt(_RET_K, errno_eperm),
        _stmt(_RET_K, _SECCOMP_RET_ALLOW),
    ]
    # socket(family, ...): AF_UNIX only.
    prog += [
        _jump(_JEQ_K, special["socket"], 0, 4),
        _stmt(_LD_W_ABS, _arg_low(0)),
        _jump(_JEQ_K, _AF_UNIX, 0, 1),
        _stmt(_RET_K, _SECCOMP_RET_ALLOW),
        _stmt(_RET_K, errno_eperm),
    ]
    # kill(pid) and tkill(tid): pid in args[0]; tgkill(tgid, ...), rt_sigqueueinfo(tgid, ...)
    # and rt_tgsigqueueinfo(tgid, ...): tgid in args[0] too. (pidfd_send_signal names its
    # target by a descriptor the filter cannot read: refused above.)
    for name in ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        prog += _signal_guard(special[name], protected, errno_eperm)
    prog.append(_stmt(_RET_K, _SECCOMP_RET_ALLOW))
    return prog


def _signal_guard(nr: int, protected: tuple[int, ...], deny: int) -> list[bytes]:
    """Allow pid 0 and positive pids except the protected ones; refuse the rest."""
    count = len(protected)
    body = [_stmt(_LD_W_ABS, _arg_low(0))]  # the pid (pid_t, low word)
    for i, pid in enumerate(protected):  # a protected pid -> deny, count - i steps ahead
        body.append(_jump(_JEQ_K, pid, count - i, 0))
    body += [
        _jump(_JSET_K, 0x80000000, 0, 1),  # negative -> deny, else allow
        _stmt(_RET_K, deny),
        _stmt(_RET_K, _SECCOMP_RET_ALLOW),
    ]
    return [_jump(_JEQ_K, nr, 0, len(body)), *body]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(protected: tuple[int, ...]) -> None:
    """Install the filter on the calling process (its only thread), which passes it on to every
    process it forks; `protected`: the pids no job may signal (the executor, its zygote)."""
    program = b"".join(build_filter(protected))
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    # Docker's no-new-privileges and bubblewrap set it already; unprivileged filters need it.
    if libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 and libc.prctl(
            _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
