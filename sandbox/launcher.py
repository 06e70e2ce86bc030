"""Starts one namespace jail: joins the worker's cgroups, gives up host root, execs bubblewrap.

Run by `sandbox.backends` as `python -I launcher.py PLAN`, where PLAN is a JSON object:
{"cgroups": [cgroup.procs paths], "uid": int or null, "stage": [[source, mountpoint], ...],
"argv": [bubblewrap and its arguments]}. Standard library only.

Why it exists: bubblewrap started by root maps the jail's uid onto host uid 0, so a job would
own every root-owned file it can see and could write host-global sysctls through /proc. With
"uid" set, this launcher drops to that unprivileged host uid before bubblewrap starts, and the
jail's user namespace then maps onto it. An unprivileged user cannot reach paths under a
private directory such as /root (where pyenv installs Python), so first, in a mount namespace
of its own that nothing else sees, it bind-mounts each "stage" source onto a world-readable
mountpoint that bubblewrap binds from.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SystemExit(f"restem sandbox launcher: {what} failed: {os.strerror(errno)}")


def stage(pairs: list[list[str]]) -> None:
    """Bind each source onto its mountpoint, in a private mount namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    for source, mountpoint in pairs:
        _check(libc.mount(source.encode(), mountpoint.encode(), None, MS_BIND | MS_REC, None),
               f"binding {source} on {mountpoint}")


def main() -> None:
    plan = json.loads(sys.argv[1])
    for procs in plan["cgroups"]:  # joined first, so that everything bubblewrap starts is inside
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    if plan["uid"] is not None:
        stage(plan["stage"])
        uid = plan["uid"]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    os.execv(plan["argv"][0], plan["argv"])


if __name__ == "__main__":
    try:
        main()
    except OSError as exc:  # one line on stderr, which the pool puts in its start error
        raise SystemExit(f"restem sandbox launcher: {exc}") from None
