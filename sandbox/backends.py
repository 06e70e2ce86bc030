"""How each backend starts one worker: a process that speaks the executor protocol on its
stdin/stdout, or (docker) on a unix socket it connects to (`ControlSocket`).

- `docker`: `docker run -i` of the sandbox image, hardened: no network, read-only root, a
  size- and inode-limited noexec tmpfs at /tmp (the only writable place: Docker's
  world-writable /dev/mqueue is covered read-only), every capability dropped,
  no-new-privileges, the default seccomp profile, pids/memory(=swap)/CPU limits, no core
  files, IPC off, no logs, uid 65534. The executor is PID 1 and reaps. The control channel
  is a unix socket in a directory mounted read-only, which is empty once the executor has
  connected (stdio through Docker's relay when the engine cannot see that directory).
- `namespace`: bubblewrap with every namespace unshared, the executor as PID 1 (run by
  `jail_python`), a read-only view of /usr (and of the Python prefix when it is elsewhere),
  a private size-limited /tmp (the only writable place: the jail's root and /dev are
  remounted read-only, /proc/sys is covered by an empty read-only tmpfs, /sys is absent),
  no capabilities, uid 65534, an empty environment; plus
  a pids and memory cgroup when the host lets us make one. The jail's uid is never host
  root: started by root, `sandbox/launcher.py` drops to host uid 65534 before bubblewrap
  runs; started by anyone else, the jail maps onto that user.
- `local`: the executor as a plain subprocess. No isolation beyond the executor's per-job
  layers (rlimits, seccomp). Unsafe; explicit opt-in only.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

JAIL_DIR = Path(__file__).resolve().parent / "jail"
LAUNCHER = Path(__file__).resolve().parent / "launcher.py"
DEVICES = ("null", "zero", "full", "random", "urandom")
JOB_UID = 65534  # the host uid (and gid) a job runs as: `nobody`, never root
CONTROL_MOUNT = "/run/restem-control"  # where a docker worker sees its control socket
PROOF_TIMEOUT_S = 2.0
BACKENDS = ("docker", "namespace", "local")
# No PYTHON* variables, no site (the standard library only: no .pth code of the host runs in
# a jail, and a program sees the same modules on every backend), no .pyc writes.
EXECUTOR_ARGS = ["-E", "-S", "-B"]


@dataclass
class WorkerSpec:
    """Pool-wide settings every worker of a backend is started with."""

    backend: str
    image: str = ""
    max_processes: int = 32
    memory_mb: int = 2048  # the whole worker: executor plus one job
    cpus: float = 1.0
    scratch_mb: int = 64
    labels: dict[str, str] = field(default_factory=dict)


class ControlSocket:
    """A unix socket, in a directory of its own, where one executor connects (the docker
    backend's control channel, which skips Docker's stdio relay). The executor proves itself
    by sending `nonce` first. The nonce reaches the container through the docker CLI's
    environment, never its command line (which every local user can read in /proc). Once the
    executor is in, the listener is closed and its file removed, so nothing connects after."""

    def __init__(self, parent: str | None) -> None:
        self.directory = tempfile.mkdtemp(prefix="restem-control-", dir=parent)
        # Ours, so no one else can replace what is in it; the container's uid may pass
        # through to the socket, not list the directory.
        os.chmod(self.directory, 0o711)
        self.path = os.path.join(self.directory, "socket")
        self.nonce = secrets.token_hex(16)
        self.listener: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o666)  # whoever reaches it may connect; only the nonce is let in
        self.listener.listen(16)

    def accept(self, deadline: float, fallback_fd: int) -> socket.socket | None:
        """The executor's connection, or None when it answered on `fallback_fd` (its stdout:
        an engine that cannot see our directory) or `deadline` passed. Connections are read
        side by side, each dropped after PROOF_TIMEOUT_S or a wrong proof, so strangers that
        connect and stay silent cannot hold the executor's turn."""
        pending: dict[socket.socket, tuple[bytes, float]] = {}
        try:
            while (now := time.monotonic()) < deadline:
                for connection, (_, until) in list(pending.items()):
                    if until <= now:
                        del pending[connection]
                        connection.close()
                wait = min([deadline, *(until for _, until in pending.values())]) - now
                ready = select.select([self.listener, fallback_fd, *pending], [], [],
                                      max(wait, 0))[0]
                if fallback_fd in ready:
                    break
                if self.listener in ready:
                    connection, _ = self.listener.accept()
                    connection.setblocking(False)
                    pending[connection] = (b"", time.monotonic() + PROOF_TIMEOUT_S)
                for connection in [c for c in ready if c in pending]:
                    got, until = pending.pop(connection)
                    try:
                        chunk = connection.recv(len(self.nonce) - len(got))
                    except OSError:
                        chunk = b""
                    got += chunk
                    if chunk and len(got) < len(self.nonce):
                        pending[connection] = (got, until)
                    elif chunk and hmac.compare_digest(got, self.nonce.encode()):
                        connection.setblocking(True)
                        return connection  # (the listener closes below)
                    else:
                        connection.close()
            return None
        finally:
            for connection in pending:
                connection.close()
            self.close()

    def close(self) -> None:
        """Stop listening and remove the socket and its directory (idempotent)."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self.directory)


def control_directory() -> str | None:
    """Where the docker backend makes its control sockets: RESTEM_SANDBOX_CONTROL_DIR (a
    directory the engine sees at the same path: for a server in a container that drives the
    host's engine, mount one there at the same path), else the temporary directory when the
    engine runs on this machine; None (stdio through Docker's relay) when it does not."""
    if os.environ.get("RESTEM_SANDBOX_CONTROL_DIR"):
        return os.environ["RESTEM_SANDBOX_CONTROL_DIR"]
    return tempfile.gettempdir() if _engine_is_here() else None


@functools.cache
def _engine_is_here() -> bool:
    """Whether the Docker engine runs on this machine, so that it sees our directories:
    its host name is ours (a server in a container, or a remote engine, has another)."""
    try:
        answer = subprocess.run(["docker", "info", "--format", "{{.Name}}"],
                                capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return answer.returncode == 0 and answer.stdout.strip() == socket.gethostname()


@dataclass
class Launch:
    """A started worker process and what must be undone when it goes; `control`: where the
    executor may connect instead of answering on stdout (the docker backend)."""

    process: subprocess.Popen
    name: str
    cleanup: list = field(default_factory=list)
    control: ControlSocket | None = None

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        for step in self.cleanup:
            with contextlib.suppress(Exception):
                step()


def default_backend() -> str:
    """Docker when its engine answers, else bubblewrap."""
    if shutil.which("docker") and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30
    ).returncode == 0:
        return "docker"
    return "namespace"


def launch(spec: WorkerSpec) -> Launch:
    name = f"restem-sbx-{uuid.uuid4().hex[:12]}"
    if spec.backend == "docker":
        return _docker(spec, name)
    if spec.backend == "namespace":
        return _namespace(spec, name)
    if spec.backend == "local":
        return _local(name)
    raise ValueError(f"unknown sandbox backend {spec.backend!r}; expected one of {BACKENDS}")


def _popen(argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        bufsize=0, start_new_session=True, **kwargs,
    )


def _docker(spec: WorkerSpec, name: str) -> Launch:
    labels = {"restem.sandbox": "1", **spec.labels}
    argv = ["docker", "run", "-i", "--rm", "--name", name]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    argv += [
        "--network", "none",
        "--read-only",
        "--tmpfs", f"/tmp:rw,nosuid,nodev,noexec,size={spec.scratch_mb}m,nr_inodes=4096,mode=1777",
        # Docker mounts a world-writable mqueue filesystem at /dev/mqueue: a queue created
        # there would outlive the job. Covered, so /tmp is the only writable place.
        "--tmpfs", "/dev/mqueue:ro,nosuid,nodev,noexec,size=4k,mode=0555",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--pids-limit", str(spec.max_processes + 2),
        "--memory", f"{spec.memory_mb}m",
        "--memory-swap", f"{spec.memory_mb}m",
        "--cpus", str(spec.cpus),
        "--ulimit", "core=0",
        "--ipc", "none",
        "--log-driver", "none",
        "--hostname", "sandbox",
        "--user", "65534:65534",
        "--pull", "never",
    ]
    parent = control_directory()
    control = ControlSocket(parent) if parent is not None else None
    env = None
    if control is not None:
        # `-e NAME` alone: the value comes from the CLI's environment, which only its owner
        # can read, not from its command line, which every local user can.
        argv += ["-v", f"{control.directory}:{CONTROL_MOUNT}:ro", "-e", "RESTEM_CONTROL_NONCE"]
        env = {**os.environ, "RESTEM_CONTROL_NONCE": control.nonce}
    argv.append(spec.image)
    if control is not None:
        argv.append(f"{CONTROL_MOUNT}/socket")  # after the image's own arguments
    try:
        process = _popen(argv, env=env)
    except OSError:
        if control is not None:
            control.close()
        raise
    remove = lambda: subprocess.run(  # noqa: E731
        ["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False
    )
    return Launch(process, name, [remove], control)


def _namespace(spec: WorkerSpec, name: str) -> Launch:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError("the namespace backend needs bubblewrap (apt-get install bubblewrap)")
    python = jail_python()
    # As root, drop to JOB_UID before bubblewrap (see sandbox/launcher.py); the Python prefix
    # and the executor's directory are then bound from staged, world-readable mountpoints.
    drop = os.geteuid() == 0
    sources = [(str(JAIL_DIR), "/opt/restem")]
    if not python.startswith("/usr/"):
        prefix = os.path.realpath(sys.base_prefix)
        sources.append((prefix, prefix))
    binds, stage, staging = [], [], ""
    if drop:
        staging = tempfile.mkdtemp(prefix=f"{name}-")
        os.chmod(staging, 0o755)
    for source, target in sources:
        if drop:
            mountpoint = os.path.join(staging, str(len(stage)))
            os.mkdir(mountpoint)
            stage.append([source, mountpoint])
            source = mountpoint
        binds += ["--ro-bind", source, target]
    cleanup = [lambda: _remove_staging(staging, stage)] if drop else []
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--as-pid-1", "--cap-drop", "ALL", "--uid", str(JOB_UID), "--gid", str(JOB_UID),
            "--ro-bind", "/usr", "/usr"]
    for top in ("bin", "lib", "lib32", "lib64", "sbin"):
        path = Path("/") / top
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    argv += [
        *binds,
        # /proc/sys covered by an empty read-only tmpfs: no sysctl is writable, or readable.
        "--proc", "/proc", "--size", "4096", "--tmpfs", "/proc/sys", "--remount-ro", "/proc/sys",
        # A /dev of our own rather than bubblewrap's --dev: that one mounts devpts, which
        # makes bubblewrap nest a second user namespace, and the job's uid_map would then
        # name the middle namespace's uid instead of the host's.
        "--tmpfs", "/dev",
        *(arg for dev in DEVICES for arg in ("--dev-bind", f"/dev/{dev}", f"/dev/{dev}")),
        "--symlink", "/proc/self/fd", "/dev/fd",
        *(arg for i, std in enumerate(("stdin", "stdout", "stderr"))
          for arg in ("--symlink", f"/proc/self/fd/{i}", f"/dev/{std}")),
        "--size", str(spec.scratch_mb * 2**20), "--tmpfs", "/tmp",
        # The jail's root and /dev are tmpfs that bubblewrap made writable by the jail's uid:
        # read-only, so that /tmp (emptied after every job) is the only writable place.
        "--remount-ro", "/dev", "--remount-ro", "/",
        "--chdir", "/tmp", "--hostname", "sandbox",
        python, *EXECUTOR_ARGS, "/opt/restem/executor.py", "/tmp",
    ]
    cgroups = _make_cgroups(name, spec)
    cleanup += [lambda c=c: _remove_cgroup(c) for c in cgroups]
    plan = {"cgroups": [str(Path(c) / "cgroup.procs") for c in cgroups],
            "uid": JOB_UID if drop else None, "stage": stage, "argv": argv}
    try:
        process = _popen([sys.executable, "-I", str(LAUNCHER), json.dumps(plan)])
    except OSError:
        for step in cleanup:
            step()
        raise
    return Launch(process, name, cleanup)


def jail_python() -> str:
    """The interpreter a namespace jail runs: the system's python3.X of our own version when
    there is one (the same language, already under the jail's read-only /usr, and usually
    a distribution's optimised build, where a pyenv build has no PGO), else our own, whose
    prefix the jail then binds."""
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    return system if os.access(system, os.X_OK) else os.path.realpath(sys.executable)


def _remove_staging(staging: str, stage: list[list[str]]) -> None:
    """Remove the (empty, on the host) mountpoints; rmdir never deletes what a bind shows."""
    for _, mountpoint in stage:
        with contextlib.suppress(OSError):
            os.rmdir(mountpoint)
    with contextlib.suppress(OSError):
        os.rmdir(staging)


def _own_cgroup(controller: str) -> Path | None:
    """This process's cgroup directory for a v1 controller, if it is mounted and writable."""
    root = Path("/sys/fs/cgroup") / controller
    if not root.is_dir():
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            here = root / path.lstrip("/")
            return here if os.access(here, os.W_OK) else None
    return None


def _make_cgroups(name: str, spec: WorkerSpec) -> list[str]:
    """pids and memory cgroups (v1) for one worker; none when the host does not allow it."""
    made = []
    for controller, settings in (
        ("pids", {"pids.max": spec.max_processes + 2}),
        ("memory", {"memory.limit_in_bytes": spec.memory_mb * 2**20}),
    ):
        parent = _own_cgroup(controller)
        if parent is None:
            continue
        path = parent / name
        try:
            path.mkdir()
            for key, value in settings.items():
                (path / key).write_text(str(value))
        except OSError:
            _remove_cgroup(str(path))
            continue
        made.append(str(path))
    return made


def _remove_cgroup(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def cgroup_support() -> list[str]:
    """The controllers the namespace backend can limit on this host."""
    return [c for c in ("pids", "memory") if _own_cgroup(c) is not None]


def _local(name: str) -> Launch:
    scratch = tempfile.mkdtemp(prefix=f"{name}-")
    argv = [sys.executable, *EXECUTOR_ARGS, str(JAIL_DIR / "executor.py"), scratch]
    process = _popen(argv, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    return Launch(process, name, [lambda: shutil.rmtree(scratch, ignore_errors=True)])
