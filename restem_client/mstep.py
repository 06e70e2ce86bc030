"""The M-step launcher: the fine-tuning script (restem_client/finetune.py) on this machine
with `torchrun --standalone`, or on a Ray cluster's workers with Ray Train's `TorchTrainer`.

Both run the same script with the same config file, so a step trains the same recipe either
way: the global batch is a config key, and each worker derives its accumulation from it and
the world size. Ray Train starts the process group (NCCL on GPUs, gloo on CPUs) and sets
RANK, WORLD_SIZE and LOCAL_RANK; the script uses the group it finds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any


class FinetuneFailed(RuntimeError):
    """The fine-tuning processes failed; the message names how."""


def finetune_local(config_path: Path, workers: int) -> None:
    """torchrun on this machine; `--standalone` gives it a rendezvous of its own, so two runs
    on one machine never meet on port 29500."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={workers}", "-m", "restem_client.finetune", str(config_path)]
    finished = subprocess.run(command, check=False)
    if finished.returncode:
        raise FinetuneFailed(f"fine-tuning exited with status {finished.returncode}: "
                             f"{' '.join(command)}")


def _train_worker(settings: dict[str, Any]) -> None:
    """Ray Train's function on each worker: the fine-tuning script's entry point."""
    from restem_client.finetune import main

    status = main([settings["config"]])
    if status:
        raise FinetuneFailed(f"fine-tuning exited with status {status} on this worker")


def finetune_on_ray(config_path: Path, workers: int, storage: Path, name: str,
                    address: str = "") -> None:
    """`workers` Ray Train workers (one GPU each where the cluster has GPUs, else one CPU);
    `storage` is where Ray Train keeps its run state (on storage every node sees)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from restem_client.engines import connect_ray

    connect_ray(address)
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    trainer = TorchTrainer(
        _train_worker, train_loop_config={"config": str(config_path)},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus,
                                     resources_per_worker=None if gpus else {"CPU": 1}),
        run_config=RunConfig(storage_path=str(storage), name=name))
    result = trainer.fit()
    if result.error:
        raise FinetuneFailed(f"fine-tuning on Ray failed: {result.error}")
