"""Sampling engines in their own processes: one child process on this machine, or Ray actors
across a cluster. Either way the loop's process never holds an engine, so closing the pool
frees its GPUs before fine-tuning starts, and checks that they are free.

    pool = open_engines(EngineSpec("vllm", model, tensor_parallel_size=2), cluster="ray",
                        replicas=4)
    pool.run(shards, params_for, done)   # shards of prompts; done(k, completions) as each ends
    pool.close()                         # (evals.sampling.ShardSampler; evals.evaluate runs it)

`LocalEngines` (`cluster = "local"`): the sampler lives in one spawned worker of a
`ProcessPoolExecutor`. `RayEngines` (`cluster = "ray"`): `replicas` actors, each holding a
sampler with `num_gpus = tensor_parallel_size`; shards go to whichever actor is free, and a
shard whose actor died (a lost node, an OOM kill) is given to another. Ray restarts a dead
actor (`max_restarts`); an actor that fails twice in a row is dropped, and the step fails
with the cause only when no actor is left.

A live engine that stops making progress (a hung collective, a stopped process) is caught by
`StallLimit`: a shard that runs past it ends its engine. A Ray actor is restarted and the
shard sampled again; the local engine fails the step with `EngineStalled`, and the resumed
run starts at that shard.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.sampling import Completion, Prompt, SamplingParams

log = logging.getLogger(__name__)

CLUSTERS = ("local", "ray")
WAIT_LOG_S = 60.0  # a wait longer than this says what it waits for
ACTOR_RESTARTS = 2
GPU_FREE_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0  # for an engine to close, then for its processes to end

Completions = list[list[Completion]]
Done = Callable[[int, Completions], None]


@dataclass(frozen=True)
class EngineSpec:
    """What each engine runs: a sampler backend (`hf`, `vllm`) on a checkpoint."""

    backend: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)  # make_sampler options
    gpus: int = 0  # GPUs per engine (tensor_parallel_size for vLLM; 0 on CPU)

    def build(self) -> Any:
        from restem_client.sampling import make_sampler

        return make_sampler(self.backend, self.model, **self.options)


class EngineLost(RuntimeError):
    """Every engine died; the message names the last cause."""


class EngineStalled(EngineLost):
    """A shard ran past the stall limit; the message names the shard and the limit."""


@dataclass(frozen=True)
class StallLimit:
    """How long a shard may run before its engine counts as stuck: `first_s` while no shard
    of the same `run` call has finished (nothing to compare with), then `factor` times the
    slowest finished one, and never under `floor_s`. The shards of one call are alike in
    size, so a shard that takes ten times the slowest one is not slow but stuck. Infinite
    values turn it off (`StallLimit.of(0)`)."""

    first_s: float = 7200.0
    floor_s: float = 1800.0
    factor: float = 10.0

    @classmethod
    def of(cls, stall_s: float) -> StallLimit:
        """The run config's `stall_s`: the floor, 4 x it for a first shard; 0 is off."""
        if stall_s <= 0:
            return cls(math.inf, math.inf)
        return cls(first_s=4 * stall_s, floor_s=stall_s)

    def seconds(self, slowest_s: float | None) -> float:
        if slowest_s is None:
            return self.first_s
        return max(self.floor_s, self.factor * slowest_s)

    def describe(self, slowest_s: float | None) -> str:
        if slowest_s is None:
            return f"{self.first_s:.0f} s for a first shard"
        return (f"{self.seconds(slowest_s):.0f} s: {self.factor:g} x the slowest shard so "
                f"far ({slowest_s:.0f} s), at least {self.floor_s:.0f} s")


class GPUsBusy(RuntimeError):
    """GPU memory was still held after the engines closed; the message names the holders."""


# ----------------------------------------------------------------------------- local

_engine: Any = None  # the sampler of a LocalEngines worker process


def _start_engine(spec: EngineSpec) -> None:
    global _engine
    _engine = spec.build()


def _sample(prompts: list[Prompt], params: SamplingParams) -> Completions:
    return _engine.generate(prompts, params)


def _stop_engine() -> None:
    global _engine
    if _engine is not None:
        _engine.close()
        _engine = None
        import gc

        gc.collect()


def _process_tree(pid: int) -> list[int]:
    """A process and its descendants (from /proc), children first."""
    tree = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            tree += _process_tree(int(child))
    return [*tree, pid]


class LocalEngines:
    """One engine in a spawned child process (CUDA and vLLM need spawn, not fork)."""

    def __init__(self, spec: EngineSpec, stall: StallLimit | None = None) -> None:
        self.spec = spec
        self.stall = stall or StallLimit()
        self._stuck = False  # a stalled engine is killed at close, not asked to close
        self._pool = ProcessPoolExecutor(max_workers=1,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_engine, initargs=(spec,))
        # The first call waits for the engine to load, so a model that cannot load fails here.
        self.pid: int = _result_with_progress(self._pool.submit(os.getpid), "the engine to load")

    def run(self, shards: dict[int, list[Prompt]], params_for: Callable[[int], SamplingParams],
            done: Done) -> None:
        slowest: float | None = None
        for index in sorted(shards):
            started = time.monotonic()
            future = self._pool.submit(_sample, shards[index], params_for(index))
            try:
                completions = _result_with_progress(future, f"shard {index}",
                                                    self.stall.seconds(slowest),
                                                    self.stall.describe(slowest))
            except EngineStalled:
                self._stuck = True
                raise
            slowest = max(time.monotonic() - started, slowest or 0.0)
            done(index, completions)

    def close(self) -> None:
        """Close the engine in its process, then end that process and its children (vLLM's
        engine core): a worker holding vLLM does not always exit on its own. A stuck one is
        killed at once."""
        if not self._stuck:
            try:
                self._pool.submit(_stop_engine).result(timeout=STOP_TIMEOUT_S)
            except Exception as exc:  # the process is ended below either way
                log.warning(f"the sampling engine did not close cleanly ({exc!r}); "
                            "ending its process")
        tree = _process_tree(self.pid)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if self._stuck else signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(Path(f"/proc/{pid}").exists() and _running(pid) for pid in tree):
            if time.monotonic() > deadline:
                for pid in tree:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.2)
        self._pool.shutdown(wait=True, cancel_futures=True)
        wait_gpus_free([self.pid])


def _running(pid: int) -> bool:
    """Whether a process is alive (a zombie waiting to be reaped is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _result_with_progress(future: Future, what: str, limit_s: float = math.inf,
                          limit: str = "") -> Any:
    """The future's result, saying every WAIT_LOG_S what it waits for; after `limit_s`
    (described by `limit`), EngineStalled (close() then ends the engine)."""
    started = time.monotonic()
    while True:
        timeout = max(0.0, min(WAIT_LOG_S, limit_s - (time.monotonic() - started)))
        finished, _ = wait([future], timeout=timeout, return_when=FIRST_COMPLETED)
        if finished:
            return future.result()
        waited = time.monotonic() - started
        if waited >= limit_s:
            raise EngineStalled(f"{what} has sampled for {waited:.0f} s, past the stall limit "
                                f"of {limit}; its engine is stuck")
        log.info(f"still sampling {what} after {waited:.0f} s")


# ----------------------------------------------------------------------------- ray


def connect_ray(address: str = "") -> None:
    """Join the Ray cluster at `address` (default: $RAY_ADDRESS, else a Ray instance started
    on this machine), unless this process already has."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address or None, log_to_driver=False, logging_level="ERROR")


class _SamplerActor:
    """A Ray actor holding one engine."""

    def __init__(self, spec: EngineSpec) -> None:
        self.sampler = spec.build()

    def sample(self, prompts: list[Prompt], params: SamplingParams) -> Completions:
        return self.sampler.generate(prompts, params)

    def where(self) -> tuple[str, int, str | None]:
        """Its node, its process, and the GPUs Ray gave it (CUDA_VISIBLE_DEVICES)."""
        import ray

        return (ray.get_runtime_context().get_node_id(), os.getpid(),
                os.environ.get("CUDA_VISIBLE_DEVICES"))


class RayEngines:
    """`replicas` engine actors on a Ray cluster (joined at `address`, or the one this process
    is already connected to)."""

    def __init__(self, spec: EngineSpec, replicas: int, address: str = "",
                 stall: StallLimit | None = None) -> None:
        import ray

        connect_ray(address)
        options: dict[str, Any] = {"num_gpus": spec.gpus, "max_restarts": ACTOR_RESTARTS}
        if not spec.gpus:
            options["num_cpus"] = 1
        actor = ray.remote(**options)(_SamplerActor)
        self.spec = spec
        self.stall = stall or StallLimit()
        self.actors = [actor.remote(spec) for _ in range(replicas)]

    def run(self, shards: dict[int, list[Prompt]], params_for: Callable[[int], SamplingParams],
            done: Done) -> None:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        queue = deque(sorted(shards))
        idle = list(self.actors)
        failures = {id(a): 0 for a in self.actors}
        running: dict[Any, tuple[Any, int, float]] = {}  # ref -> actor, shard, start
        ended: set[Any] = set()  # refs whose stalled actor was killed; their error is due
        slowest: float | None = None  # of this call's shards
        last_cause = ""
        started = time.monotonic()
        while queue or running:
            while idle and queue:
                actor, index = idle.pop(0), queue.popleft()
                ref = actor.sample.remote(shards[index], params_for(index))
                running[ref] = (actor, index, time.monotonic())
            if not running:
                raise EngineLost(f"every sampling engine died; last cause: {last_cause}")
            limit = self.stall.seconds(slowest)
            due = [t + limit for ref, (_, _, t) in running.items() if ref not in ended]
            timeout = max(0.0, min([WAIT_LOG_S, *(d - time.monotonic() for d in due)]))
            ready, _ = ray.wait(list(running), num_returns=1, timeout=timeout)
            if not ready:
                ended |= self._end_stalled(running, ended, slowest)
                busy = ", ".join(str(i) for _, i, _ in running.values())
                log.info(f"sampling shards {busy} on {len(running)} engines "
                         f"({time.monotonic() - started:.0f} s so far)")
                continue
            actor, index, shard_started = running.pop(ready[0])
            ended.discard(ready[0])
            try:
                completions = ray.get(ready[0])
            except (RayActorError, ActorDiedError, ActorUnavailableError) as exc:
                last_cause = str(exc).splitlines()[0]
                failures[id(actor)] += 1
                queue.appendleft(index)  # redone on the next free engine
                log.warning(f"shard {index} lost with its engine ({last_cause}); sampling it again")
                if failures[id(actor)] < 2:
                    idle.append(actor)  # Ray restarts it
                continue
            failures[id(actor)] = 0
            idle.append(actor)
            slowest = max(time.monotonic() - shard_started, slowest or 0.0)
            done(index, completions)

    def _end_stalled(self, running: dict[Any, tuple[Any, int, float]], ended: set[Any],
                     slowest: float | None) -> set[Any]:
        """Kill (for Ray to restart) each actor whose shard ran past the stall limit; its
        shard then fails as a lost engine's does and is sampled again. Returns their refs."""
        import ray

        killed, limit = set(), self.stall.seconds(slowest)
        for ref, (actor, index, shard_started) in running.items():
            waited = time.monotonic() - shard_started
            if ref not in ended and waited >= limit:
                log.warning(f"shard {index} has sampled for {waited:.0f} s, past the stall "
                            f"limit of {self.stall.describe(slowest)}; restarting its engine")
                ray.kill(actor, no_restart=False)
                killed.add(ref)
        return killed

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        wait_cluster_gpus_free()


# ----------------------------------------------------------------------------- both

Engines = LocalEngines | RayEngines


def open_engines(spec: EngineSpec, cluster: str = "local", replicas: int = 1,
                 address: str = "", stall: StallLimit | None = None) -> Engines:
    if cluster == "local":
        return LocalEngines(spec, stall)
    if cluster == "ray":
        return RayEngines(spec, replicas, address, stall)
    raise ValueError(f"cluster must be one of {CLUSTERS}, not {cluster!r}")


@dataclass(frozen=True)
class ClusterFacts:
    """Where the work will run, read once: its GPUs and nodes, and what `replicas = 0` and
    `train_workers = 0` mean there."""

    ray: bool  # cluster = "ray"
    gpus: int  # this machine's, or the Ray cluster's as Ray counts them on its workers
    nodes: int  # alive Ray nodes (1 without Ray)

    @classmethod
    def read(cls, cluster: str, address: str = "") -> ClusterFacts:
        """A KubeRay head pod has no GPUs of its own: the cluster's are counted by Ray."""
        if cluster != "ray":
            return cls(False, gpu_count(), 1)
        import ray

        connect_ray(address)
        return cls(True, int(ray.cluster_resources().get("GPU", 0)),
                   sum(1 for node in ray.nodes() if node["Alive"]))

    def replicas(self, tensor_parallel_size: int) -> int:
        """One engine per `tensor_parallel_size` GPUs, or one per node without GPUs (CPU
        samplers); 1 without Ray (one engine on this machine)."""
        if not self.ray:
            return 1
        return self.gpus // tensor_parallel_size if self.gpus else self.nodes

    @property
    def workers(self) -> int:
        """The M-step's processes: every GPU, else one per node."""
        return self.gpus or self.nodes


def gpu_memory(cluster: str, address: str = "") -> int | None:
    """Bytes of the smallest GPU the M-step will use, read by nvidia-smi where the GPUs are
    (on a Ray cluster, in a task holding one GPU); None where no nvidia-smi answers (a CPU
    machine, or Ray's logical GPUs)."""
    if cluster != "ray":
        return local_gpu_memory()
    import ray
    from ray.exceptions import GetTimeoutError

    connect_ray(address)
    if not ray.cluster_resources().get("GPU"):
        return None
    task = ray.remote(num_gpus=1, num_cpus=0)(local_gpu_memory).remote()
    try:
        return ray.get(task, timeout=GPU_FREE_TIMEOUT_S)
    except GetTimeoutError:
        ray.cancel(task, force=True)
        log.warning(f"no GPU of the Ray cluster was free for {GPU_FREE_TIMEOUT_S:.0f} s to "
                    "read its memory; the M-step's memory is not checked (set gpu_memory_gb)")
        return None


def local_gpu_memory() -> int | None:
    """Bytes of this machine's smallest visible GPU; None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total",
                            "--format=csv,noheader,nounits"], capture_output=True, text=True,
                           timeout=30, check=False)
    return smallest_gpu(query.stdout, os.environ.get("CUDA_VISIBLE_DEVICES"))


def smallest_gpu(listing: str, visible: str | None) -> int | None:
    """Bytes of the smallest GPU in nvidia-smi's `index, memory.total` lines (MiB) that
    CUDA_VISIBLE_DEVICES (`visible`, indices) lets this process use; None if none."""
    sizes = {}
    for line in listing.splitlines():  # "0, 81559"; an error message is no GPU
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 2 and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1]) * 2**20
    if visible is not None:
        sizes = {i: b for i, b in sizes.items() if i in {d.strip() for d in visible.split(",")}}
    return min(sizes.values()) if sizes else None


def gpu_count() -> int:
    """GPUs this process may use: nvidia-smi's list, narrowed by CUDA_VISIBLE_DEVICES; 0
    without nvidia-smi. (No torch import: the loop's process never touches a GPU.)"""
    if shutil.which("nvidia-smi") is None:
        return 0
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30,
                            check=False).stdout.count("GPU ")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return listed
    return min(listed, len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))


def gpu_holders() -> list[tuple[int, str, int]]:
    """(pid, process name, MiB) of every process holding memory on this machine's GPUs;
    empty without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory",
                            "--format=csv,noheader,nounits"], capture_output=True, text=True,
                           timeout=30, check=False)
    holders = []
    for line in query.stdout.splitlines():  # "pid, name, MiB"; a name may hold commas
        pid, _, rest = line.partition(",")
        name, _, mib = rest.rpartition(",")
        if pid.strip().isdigit():
            mib = mib.strip()
            holders.append((int(pid), name.strip(), int(mib) if mib.isdigit() else 0))
    return holders


def wait_cluster_gpus_free(timeout_s: float = GPU_FREE_TIMEOUT_S) -> list[str]:
    """`wait_gpus_free` on every alive node of the Ray cluster that has GPUs, at once (an
    engine's vLLM processes can outlive its actor on any node). Returns the nodes checked;
    GPUsBusy names the node whose GPUs stayed held."""
    import ray
    from ray.exceptions import GetTimeoutError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")]
    check = ray.remote(num_cpus=0)(_wait_node_gpus_free)
    refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote(n["NodeManagerAddress"], timeout_s) for n in nodes]
    # Each check ends by itself within timeout_s; the margin covers scheduling the task.
    try:
        errors = ray.get(refs, timeout=timeout_s + WAIT_LOG_S)
    except GetTimeoutError:
        raise GPUsBusy(f"the check that the GPUs are free did not finish on every node of "
                       f"{len(nodes)} within {timeout_s + WAIT_LOG_S:.0f} s") from None
    for error in errors:
        if error:
            raise GPUsBusy(error)
    return [n["NodeID"] for n in nodes]


def _wait_node_gpus_free(node: str, timeout_s: float) -> str:
    """On one node: "" once its GPUs are free, else the error naming the node."""
    try:
        wait_gpus_free([], timeout_s)
    except GPUsBusy as exc:
        return f"node {node}: {exc}"
    return ""


def wait_gpus_free(engine_pids: list[int], timeout_s: float = GPU_FREE_TIMEOUT_S) -> None:
    """Wait until no process other than this one holds GPU memory; fail naming the holders
    after `timeout_s`. A closed engine's process may take seconds to release its memory."""
    deadline = time.monotonic() + timeout_s
    while True:
        holders = [h for h in gpu_holders() if h[0] != os.getpid()]
        if not holders:
            return
        if time.monotonic() >= deadline:
            named = "; ".join(f"pid {pid} ({name}, {mib} MiB"
                              f"{', a sampling engine of this run' if pid in engine_pids else ''})"
                              for pid, name, mib in holders)
            raise GPUsBusy(f"GPU memory still held {timeout_s:.0f} s after the sampling "
                               f"engines closed: {named}; fine-tuning would run out of memory")
        time.sleep(2)
