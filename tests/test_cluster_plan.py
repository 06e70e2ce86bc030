"""The loop's plan on a GPU cluster, tested on Ray's logical GPUs: a local cluster of two
raylets that each declare 2 GPUs (`num_gpus`), on a machine with none. `replicas = 0` means
one engine per `tensor_parallel_size` GPUs of the cluster (counted by Ray, not on the
driver's machine), and a plan that cannot work (no engine, a global batch the M-step's
processes cannot split) fails before any work, naming the key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from restem_client.config import ConfigError, load_config
from restem_client.engines import cluster_gpus, default_replicas, gpu_count
from restem_client.restem import Run, RunConfig, estep_seed


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
    assert cluster_gpus("ray", gpu_cluster) == 4
    assert [default_replicas("ray", gpu_cluster, tp) for tp in (1, 2, 4, 8)] == [4, 2, 1, 0]
    assert default_replicas("local", "", 1) == 1


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
    plan = _run(tmp_path, gpu_cluster, "tensor_parallel_size=2")._preflight()
    assert (plan.replicas, plan.engine_gpus, plan.backend) == (2, 2, "hf")
    assert plan.train_workers == 4  # the M-step: every GPU of the cluster



def test_every_estep_iteration_samples_with_seeds_of_its_own() -> None:
    assert estep_seed(7, "iter_1") == 1007  # what runs begun before this still resume with
    shards = range(20_000)  # shard k samples with estep_seed + k
    seeds = [{estep_seed(7, f"iter_{i}") + k for k in shards} for i in (1, 2, 3)]
    assert not (seeds[0] & seeds[1]) and not (seeds[1] & seeds[2])
