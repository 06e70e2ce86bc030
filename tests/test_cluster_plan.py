"""The loop's plan on a GPU cluster, tested on Ray's logical GPUs: a local cluster of two
raylets that each declare 2 GPUs (`num_gpus`), on a machine with none. `replicas = 0` means
one engine per `tensor_parallel_size` GPUs of the cluster (counted by Ray, not on the
driver's machine), and a plan that cannot work (no engine, a global batch the M-step's
processes cannot split) fails before any work, naming the key."""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from restem_client.config import ConfigError, load_config
from restem_client.engines import (
    ClusterFacts,
    EngineSpec,
    RayEngines,
    gpu_count,
    gpu_memory,
    smallest_gpu,
    wait_cluster_gpus_free,
)
from restem_client.models import resolve
from restem_client.restem import Run, RunConfig, estep_seed

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 2})
    cluster.add_node(num_cpus=1, num_gpus=2)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    cluster.wait_for_nodes()
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


def test_replicas_zero_is_every_gpu_of_the_cluster_per_engine(gpu_cluster: str) -> None:
    assert gpu_count() == 0  # this machine: the GPUs are the cluster's workers'
    facts = ClusterFacts.read("ray", gpu_cluster)
    assert facts.gpus == 4
    assert [facts.replicas(tp) for tp in (1, 2, 4, 8)] == [4, 2, 1, 0]
    assert ClusterFacts.read("local").replicas(1) == 1


def _run(tmp_path: Path, address: str, *overrides: str) -> Run:
    return Run(load_config(RunConfig, None, [
        f"run_dir={tmp_path / 'run'}", "cluster=ray", f"ray_address={address}",
        "sampler=hf", "iterations=1", *overrides]))


def test_a_plan_with_no_engine_fails_before_any_work_naming_the_key(
        tmp_path: Path, gpu_cluster: str) -> None:
    with pytest.raises(ConfigError, match=r"'replicas'.*tensor_parallel_size = 8.*has 4"):
        _run(tmp_path, gpu_cluster, "tensor_parallel_size=8").run()
    assert not (tmp_path / "run" / "base").exists()  # no evaluation started


def test_a_global_batch_the_mstep_cannot_split_fails_before_any_work(
        tmp_path: Path, gpu_cluster: str) -> None:
    # 4 GPUs: 4 processes of micro-batch 4 take 16 sequences per pass; 24 is no multiple
    with pytest.raises(ConfigError, match=r"global_batch_size 24.*4 process\(es\).*"
                                          r"finetune.global_batch_size"):
        _run(tmp_path, gpu_cluster, "finetune.global_batch_size=24",
             "finetune.micro_batch_size=4").run()
    assert not (tmp_path / "run" / "base").exists()


def test_the_plan_is_made_from_the_cluster(tmp_path: Path, gpu_cluster: str) -> None:
    run = _run(tmp_path, gpu_cluster, "tensor_parallel_size=2")
    run.base = str(resolve(run.config.model))  # what Run.run settles before its plan
    run.train, run.val, run.test = run._splits()
    plan = run._preflight()
    assert (plan.replicas, plan.engine_gpus, plan.backend) == (2, 2, "hf")
    assert plan.train_workers == 4  # the M-step: every GPU of the cluster
    # Read in a task holding one of the cluster's GPUs: logical GPUs have no nvidia-smi.
    assert gpu_memory("ray", gpu_cluster) is None


def test_a_plan_whose_mstep_cannot_fit_the_gpus_fails_before_any_work(
        tmp_path: Path, gpu_cluster: str) -> None:
    """SmolLM2-135M's M-step at the default micro-batch (4 sequences of the longest prompt
    plus max_tokens) without activation checkpointing needs about 3 GiB per GPU."""
    with pytest.raises(ConfigError, match=r"M-step needs about .* GiB per GPU.*1.0 GiB GPU.*"
                                          r"activation_checkpointing = true"):
        _run(tmp_path, gpu_cluster, "gpu_memory_gb=1").run()
    assert not (tmp_path / "run" / "base").exists()
    with pytest.raises(ConfigError, match=r"'finetune.max_seq_len': 9000 .* 8192 positions"):
        _run(tmp_path, gpu_cluster, "finetune.max_seq_len=9000").run()


def test_gpus_are_checked_free_on_every_node_that_has_them(gpu_cluster: str) -> None:
    import ray

    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    assert set(wait_cluster_gpus_free(timeout_s=5)) == nodes



def _documented_recipes() -> list[list[str]]:
    """The `restem run` commands of docs/loop.md's Slurm and KubeRay sections, as words."""
    text = (REPO / "docs" / "loop.md").read_text().split("### Slurm")[1]
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        commands += [shlex.split(line[line.index("restem run"):].split("#")[0])
                     for line in joined.splitlines() if "restem run" in line]
    return commands


def test_the_documented_cluster_recipes_get_past_their_plan(
        tmp_path: Path, gpu_cluster: str, data_dir: Path, caplog: pytest.LogCaptureFixture
        ) -> None:
    """In their CPU form: the embedded model for the checkpoint, the transformers sampler
    (logical GPUs cannot run vLLM), this cluster and H100-sized GPUs; nothing else edited."""
    recipes = _documented_recipes()
    assert len(recipes) == 2  # Slurm, KubeRay
    for words in recipes:
        keys = words[2:]
        config = keys[keys.index("--config") + 1]
        assert config.endswith("math.toml"), words
        overrides = [k for k in keys[keys.index("--config") + 2:]
                     if not k.startswith(("model=", "ray_address=", "run_dir="))]
        assert "cluster=ray" in overrides and len(overrides) < len(keys) - 2, words
        run = Run(load_config(RunConfig, REPO / "configs" / "math.toml", [
            *overrides, f"ray_address={gpu_cluster}", f"run_dir={tmp_path / 'run'}",
            f"data_dir={data_dir}", "sampler=hf", "gpu_memory_gb=80"]))
        run.base = str(resolve(run.config.model))
        run.train, run.val, run.test = run._splits()
        with caplog.at_level(logging.INFO, logger="restem_client.restem"):
            plan = run._preflight()
        assert (plan.replicas, plan.engine_gpus, plan.train_workers) == (4, 1, 4)
        assert "M-step memory:" in caplog.text and "GPUs of 80.0 GiB" in caplog.text


@pytest.mark.parametrize("config", ["demo.toml", "mbpp.toml"])
def test_the_demo_configs_plan_on_a_machine_with_several_gpus(
        tmp_path: Path, gpu_cluster: str, data_dir: Path, config: str) -> None:
    """Their 8 / 8 batch is one micro-batch on one process: 4 GPUs do not split it."""
    run = Run(load_config(RunConfig, REPO / "configs" / config, [
        "cluster=ray", f"ray_address={gpu_cluster}", f"run_dir={tmp_path / 'run'}",
        f"data_dir={data_dir}", "sampler=hf"]))
    run.base = str(resolve(run.config.model))
    run.train, run.val, run.test = run._splits()
    assert run._preflight().train_workers == 1


def test_each_engine_gets_gpus_of_its_own(gpu_cluster: str, tiny_model: Path) -> None:
    """Two engines of two GPUs (tensor_parallel_size = 2) on the cluster's 2 x 2: one per
    node, each seeing the two GPUs Ray gave it (CUDA_VISIBLE_DEVICES) and no other."""
    import ray

    engines = RayEngines(EngineSpec("hf", str(tiny_model), {"batch_size": 2}, gpus=2),
                         replicas=2, address=gpu_cluster)
    try:
        placed = ray.get([actor.where.remote() for actor in engines.actors], timeout=600)
    finally:
        engines.close()
    assert len({node for node, _, _ in placed}) == 2
    assert [sorted(devices.split(",")) for _, _, devices in placed] == [["0", "1"]] * 2


def test_gpu_memory_is_the_smallest_gpu_this_process_may_use() -> None:
    """nvidia-smi --query-gpu=index,memory.total --format=csv,noheader,nounits on a node with
    an H100 80GB and an H100 NVL (94 GB), and what it prints when its driver is gone."""
    listing = "0, 81559\n1, 95830\n"
    assert smallest_gpu(listing, None) == 81559 * 2**20
    assert smallest_gpu(listing, "1") == 95830 * 2**20
    assert smallest_gpu(listing, "") is None  # CUDA_VISIBLE_DEVICES="" hides every GPU
    failed = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
              "driver. Make sure that the latest NVIDIA driver is installed and running.\n")
    assert smallest_gpu(failed, None) is None


def test_reproducible_sampling_is_a_switch_for_the_estep_seeds() -> None:
    seeded = Run(load_config(RunConfig, None, ["seed=7"]))
    assert seeded._estep_params("iter_2").seed == estep_seed(7, "iter_2")
    unseeded = Run(load_config(RunConfig, None, ["seed=7", "reproducible_sampling=false"]))
    params = unseeded._estep_params("iter_2")
    assert params.seed is None and params.temperature == 0.7 and params.top_k == 40


def test_every_estep_iteration_samples_with_seeds_of_its_own() -> None:
    assert estep_seed(7, "iter_1") == 1007  # what runs begun before this still resume with
    shards = range(20_000)  # shard k samples with estep_seed + k
    seeds = [{estep_seed(7, f"iter_{i}") + k for k in shards} for i in (1, 2, 3)]
    assert not (seeds[0] & seeds[1]) and not (seeds[1] & seeds[2])
