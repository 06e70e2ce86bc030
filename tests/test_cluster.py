"""The E-step across engines and nodes, on a real Ray cluster of two raylets on this machine
(`ray.cluster_utils.Cluster`, one CPU each) with the transformers sampler on a tiny model:
the same samples as one local engine, a killed or stopped engine costs only its shard, a
killed driver resumes without sampling a shard twice, and a run directory has one owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from evals.evaluate import evaluate, shard_path
from evals.sampling import preset
from evals.tasks import load
from restem_client.config import to_toml
from restem_client.engines import (
    EngineSpec,
    EngineStalled,
    LocalEngines,
    RayEngines,
    StallLimit,
)
from restem_client.run_lock import RunDirectoryBusy, RunLock

REPO = Path(__file__).resolve().parents[1]
PARAMS = preset("estep", n=3, max_tokens=12, seed=11)
SHARD_SIZE = 3


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    cluster.wait_for_nodes()
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def verifier() -> Iterator[object]:
    from restem_client.client import open_verifier

    with open_verifier(None, None, sandbox="auto") as opened:
        yield opened


def _problems() -> list:
    return load("arith", "train", None)[:8]


def _spec(model: Path) -> EngineSpec:
    return EngineSpec("hf", str(model), {"batch_size": 4})


@pytest.fixture(scope="module")
def reference(tiny_model: Path, verifier: object, tmp_path_factory: pytest.TempPathFactory
              ) -> Path:
    """The E-step with one engine in a local child process."""
    out = tmp_path_factory.mktemp("local")
    engines = LocalEngines(_spec(tiny_model))
    try:
        evaluate(_problems(), engines, verifier, PARAMS, out, shard_size=SHARD_SIZE, chat=True)
    finally:
        engines.close()
    assert not (out / "shards").exists()  # its own shards directory goes once merged
    return out


@pytest.mark.slow
def test_two_replicas_on_two_nodes_sample_what_one_local_engine_samples(
        ray_cluster: str, tiny_model: Path, verifier: object, reference: Path,
        tmp_path: Path) -> None:
    import ray

    engines = RayEngines(_spec(tiny_model), replicas=2, address=ray_cluster)
    try:
        nodes = {node for node, *_ in ray.get([a.where.remote() for a in engines.actors])}
        metrics = evaluate(_problems(), engines, verifier, PARAMS, tmp_path,
                           shard_size=SHARD_SIZE, chat=True)
    finally:
        engines.close()
    assert len(nodes) == 2  # one replica on each raylet
    for name in ("samples.jsonl", "samples_results.jsonl"):
        assert (tmp_path / name).read_text() == (reference / name).read_text()
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(lines) == len(_problems()) * PARAMS.n
    assert metrics["count"] == len(lines)
    assert json.loads((tmp_path / "results.json").read_text())["config"]["shards"] == 3


@pytest.mark.slow
def test_an_engine_killed_mid_shard_costs_only_that_shard(
        ray_cluster: str, tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    import ray

    from evals.prompts import render

    prompts = [render(p, None, chat=True) for p in _problems()]
    # Engine 0 gets the short shard 0 and engine 1 the long shard 1: when shard 0 is done,
    # engine 1 is still sampling, and its process is killed (as the OOM killer would).
    shards = {0: prompts[:1], 1: prompts[1:7], 2: prompts[7:8]}
    params = preset("estep", n=3, max_tokens=48, seed=11)
    engines = RayEngines(_spec(tiny_model), replicas=2, address=ray_cluster)
    victim = ray.get(engines.actors[1].where.remote())[1]
    done: Counter = Counter()
    results: dict[int, list] = {}

    def finished(index: int, completions: list) -> None:
        if not done:
            os.kill(victim, signal.SIGKILL)
        done[index] += 1
        results[index] = completions

    try:
        engines.run(shards, lambda k: params, finished)
        again: dict = {}  # sampled again by the restarted engine
        engines.run(shards, lambda k: params, again.__setitem__)
    finally:
        engines.close()
    err = caplog.text
    # Only the killed engine's shard is lost (twice when it was handed back to the actor
    # while Ray was still restarting it, as on a loaded machine).
    lost = [line for line in err.splitlines() if "lost with its engine" in line]
    assert 1 <= len(lost) <= 2 and all("shard 1 lost" in line for line in lost), err[-2000:]
    assert done == {0: 1, 1: 1, 2: 1}  # every shard delivered once
    assert results == again  # the redone shard has the samples it would have had


def test_a_stopped_local_engine_fails_the_shard_naming_the_stall_limit(tiny_model: Path
                                                                      ) -> None:
    from evals.prompts import render

    engines = LocalEngines(_spec(tiny_model), StallLimit(first_s=3.0))
    os.kill(engines.pid, signal.SIGSTOP)  # alive but making no progress, as a hung engine
    started = time.monotonic()
    try:
        with pytest.raises(EngineStalled, match=r"shard 0 has sampled for \d+ s, past the "
                                                r"stall limit of 3 s for a first shard"):
            engines.run({0: [render(_problems()[0], None, chat=True)]}, lambda k: PARAMS,
                        lambda k, c: None)
    finally:
        engines.close()
    assert time.monotonic() - started < 30  # killed, not asked to close and waited for
    assert not os.path.exists(f"/proc/{engines.pid}")



def test_the_stall_limit_compares_shards_of_one_call_only(tiny_model: Path) -> None:
    # Greedy evaluation and the E-step share an engine; an E-step shard is far longer than
    # an evaluation shard and must not be held to 1 x the evaluation's slowest shard.
    from evals.prompts import render

    prompts = [render(p, None, chat=True) for p in _problems()]
    short, long = preset("greedy", max_tokens=2), preset("estep", n=3, max_tokens=48, seed=1)
    engines = LocalEngines(_spec(tiny_model), StallLimit(first_s=300.0, floor_s=0.5,
                                                         factor=1.0))
    done: dict[int, list] = {}
    try:
        engines.run({0: prompts[:1]}, lambda k: short, done.__setitem__)
        engines.run({1: prompts[1:7]}, lambda k: long, done.__setitem__)
    finally:
        engines.close()
    assert sorted(done) == [0, 1] and len(done[1]) == 6


def test_stall_limits_of_the_run_config() -> None:
    assert StallLimit.of(100) == StallLimit(first_s=400, floor_s=100, factor=10)
    limit = StallLimit.of(100)
    assert (limit.seconds(None), limit.seconds(5), limit.seconds(50)) == (400, 100, 500)
    off = StallLimit.of(0)
    assert off.seconds(None) == off.seconds(1e9) == float("inf")

@pytest.mark.slow
def test_a_stopped_ray_engine_is_restarted_and_its_shard_sampled_again(
        ray_cluster: str, tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    import ray

    from evals.prompts import render

    prompts = [render(p, None, chat=True) for p in _problems()]
    # As in the killed-engine test, but engine 1's process is stopped, not killed: it stays
    # alive and silent until the stall limit (at least 30 s, 3 x the slowest shard) ends it.
    shards = {0: prompts[:1], 1: prompts[1:7], 2: prompts[7:8]}
    params = preset("estep", n=3, max_tokens=48, seed=11)
    engines = RayEngines(_spec(tiny_model), replicas=2, address=ray_cluster,
                         stall=StallLimit(first_s=600.0, floor_s=30.0, factor=3.0))
    victim = ray.get(engines.actors[1].where.remote())[1]
    done: Counter = Counter()
    results: dict[int, list] = {}

    def finished(index: int, completions: list) -> None:
        if not done:
            os.kill(victim, signal.SIGSTOP)
        done[index] += 1
        results[index] = completions

    try:
        engines.run(shards, lambda k: params, finished)
        again: dict = {}
        engines.run(shards, lambda k: params, again.__setitem__)
    finally:
        engines.close()
    err = caplog.text
    assert err.count("past the stall limit") == 1, err[-2000:]
    assert "shard 1 has sampled for" in err and "restarting its engine" in err
    assert done == {0: 1, 1: 1, 2: 1}
    assert results == again


DRIVER = """
import sys
from pathlib import Path
from evals.sampling import preset
from evals.tasks import load
from restem_client.client import open_verifier
from restem_client.engines import EngineSpec, LocalEngines
from evals.evaluate import evaluate

if __name__ == "__main__":
    engines = LocalEngines(EngineSpec("hf", sys.argv[1], {"batch_size": 4}))
    out = Path(sys.argv[2])
    evaluate(load("arith", "train", None)[:8], engines,
             open_verifier(None, None, sandbox="auto"),
             preset("estep", n=3, max_tokens=12, seed=11), out,
             shards_dir=out / "shards", shard_size=3, chat=True)
    engines.close()
"""


@pytest.mark.slow
def test_a_killed_driver_resumes_at_the_first_unsampled_shard(
        tiny_model: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "step"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    first = shard_path(out / "shards", 0, "samples")
    process = subprocess.Popen([sys.executable, str(script), str(tiny_model), str(out)],
                               cwd=REPO, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not first.exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no shard sampled within 300 s"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    kept = {p: p.stat().st_mtime_ns for p in (out / "shards").glob("*.samples.jsonl")}
    assert kept and not (out / "samples.jsonl").exists()

    rerun = subprocess.run([sys.executable, str(script), str(tiny_model), str(out)], cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for path, mtime in kept.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was sampled again"
    for name in ("samples.jsonl", "samples_results.jsonl"):
        assert (out / name).read_text() == (reference / name).read_text()


HOLDER = """
import sys, time
from pathlib import Path
from restem_client.run_lock import RunLock
with RunLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_loop_on_a_run_directory_is_refused_naming_the_owner(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryBusy, match=rf"in use by pid {holder.pid} on host "):
            RunLock(tmp_path).__enter__()
    finally:
        holder.kill()  # a killed owner leaves no stale lock
        holder.wait()
    with RunLock(tmp_path) as lock:
        owner = json.loads(lock.path.read_text())
        assert owner["pid"] == os.getpid()
    assert lock.path.read_text() == ""  # released on exit


def _weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model.safetensors"))


@pytest.mark.slow
def test_the_mstep_on_ray_train_matches_torchrun_with_the_same_global_batch(
        ray_cluster: str, tiny_model: Path, tmp_path: Path) -> None:
    import torch

    from restem_client.mstep import finetune_local, finetune_on_ray
    from tests.conftest import write_jsonl

    data = write_jsonl(tmp_path / "sft.jsonl", [
        {"prompt": f"What is {a} + {b}?", "completion": f"{a} + {b} = {a + b}"}
        for a in range(4) for b in range(2)])
    outs = {}
    for name in ("torchrun", "ray"):
        config = tmp_path / f"{name}.toml"
        outs[name] = tmp_path / name
        config.write_text(f'model = "{tiny_model}"\ndata = "{data}"\nout = "{outs[name]}"\n'
                          "global_batch_size = 4\nmicro_batch_size = 1\nmax_steps = 2\n"
                          "lr = 1e-3\nseed = 5\n")
        if name == "ray":  # two workers, one on each raylet
            finetune_on_ray(config, 2, tmp_path / "ray_train", "mstep", ray_cluster)
        else:
            finetune_local(config, 2)
    a, b = _weights(outs["torchrun"]), _weights(outs["ray"])
    base = _weights(tiny_model) if (tiny_model / "model.safetensors").exists() else None
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    if base is not None:  # and it trained: the weights moved
        assert any(not torch.equal(a[k], base[k]) for k in a if k in base)
    summaries = [json.loads((outs[n] / "train_summary.json").read_text()) for n in outs]
    assert all(s["processes"] == 2 and s["accumulation"] == 2 for s in summaries), summaries


@pytest.mark.slow
def test_a_whole_run_on_the_cluster_with_its_cluster_keys_at_their_defaults(
        ray_cluster: str, tiny_model: Path, tmp_path: Path) -> None:
    """`restem run cluster=ray` as a user starts it, with replicas, train_workers, sampler and
    tensor_parallel_size left at their defaults: on two nodes without GPUs, one transformers
    engine per node for the evaluations and the E-step, and the SFT baseline's M-step on
    Ray Train with one worker per node (the tiny model solves nothing, so no iteration
    trains); then the summary."""
    run_dir = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text(to_toml({
        "run_dir": str(run_dir), "task": "arith", "model": str(tiny_model), "cluster": "ray",
        "ray_address": ray_cluster, "num_problems": 32, "val_limit": 4, "test_limit": 4,
        "iterations": 1, "samples_per_problem": 1, "max_tokens": 8, "sft_baseline": True,
        "shard_size": 8}))
    done = subprocess.run([sys.executable, "-m", "restem_client.cli", "run", "--config",
                           str(config)], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "plan: 2 sampling engine(s) of no GPU(s) with hf; fine-tuning on 2 process(es)" \
        in done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["sft"]["test_pass@1"] is not None
    assert (run_dir / "sft" / "checkpoint" / "config.json").exists()
    assert len((run_dir / "sft" / "train.jsonl").read_text().splitlines()) == 32
