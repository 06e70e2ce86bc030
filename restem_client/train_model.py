"""The model side of fine-tuning: the device, sharding, loading from rank 0, and saving.

Loading never holds more than one copy of the weights per node: every process builds the
model on the meta device (no memory), shards it (`fully_shard` per decoder layer, then the
root), allocates only its own shard on its device, and then rank 0 alone reads the
checkpoint (in the base's dtype) and broadcasts it tensor by tensor; each process keeps its
slice. Buffers that checkpoints do not hold (rotary frequencies) are broadcast from rank 0's
loaded model, so they are whatever the model's own constructor computes.

Saving gathers one full tensor at a time onto rank 0's host, already cast to the base's
dtype, and writes a plain Hugging Face checkpoint that transformers and vLLM load.

Wherever the other processes wait for rank 0's disk (reading before the broadcast, writing
after the gather), they wait in a barrier of a separate gloo group with a long timeout
(IO_TIMEOUT). The NCCL group keeps its default timeout, so a hang in training still fails
within minutes, and its watchdog never sees a collective pending through a long save.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

IO_TIMEOUT = timedelta(hours=2)  # the longest the others wait for rank 0 to read or write

# Config attributes by which a model's own forward changes its logits; the chunked loss
# computes plain `hidden @ lm_head.T`, so such models are refused rather than mistrained.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


class SetupError(RuntimeError):
    """The machine or the model cannot be trained as asked (a one-line reason)."""


def visible_gpus() -> str | None:
    """What shows that this machine has NVIDIA GPUs, or None."""
    if Path("/dev/nvidia0").exists():
        return "/dev/nvidia0 exists"
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                    timeout=30).stdout
            count = sum(line.startswith("GPU ") for line in listed.splitlines())
            if count:
                return f"nvidia-smi lists {count} GPU(s)"
    return None


def training_device(local_rank: int) -> torch.device:
    """This process's GPU, or the CPU where there is none. GPUs that torch cannot use are an
    error, not a silent CPU run; CUDA_VISIBLE_DEVICES= (empty) asks for the CPU on purpose."""
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1") and (seen := visible_gpus()):
        fix = ("install a CUDA build of torch (in this repository: make test VLLM=vllm "
               "CONSTRAINTS=)" if torch.version.cuda is None
               else "check the driver with nvidia-smi")
        raise SetupError(f"{seen} but torch {torch.__version__} cannot use them: {fix}, or "
                         "set CUDA_VISIBLE_DEVICES= to train on the CPU on purpose")
    return torch.device("cpu")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The modules that each become one FSDP unit (the model's `_no_split_modules`, its
    decoder layers), after checking that the loss can be computed from the hidden states."""
    config = model.config
    for name in LOGIT_TRANSFORMS:
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise SetupError(f"{type(model).__name__} sets {name}={getattr(config, name)}, "
                             "which the chunked completion loss does not apply")
    if getattr(model.get_output_embeddings(), "bias", None) is not None:
        raise SetupError(f"{type(model).__name__}'s output layer has a bias, which the "
                         "chunked completion loss does not apply")
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise SetupError(f"{type(model).__name__}'s _no_split_modules {sorted(names)} match "
                         "none of its modules, so it cannot be sharded layer by layer")
    return layers


def shard(root: nn.Module, layers: list[nn.Module], device: torch.device, world: int,
          shard_group_size: int, param_dtype: torch.dtype) -> None:
    """FSDP2 over all processes, or HSDP (shard within groups of `shard_group_size`,
    replicate across them) when that is smaller; fp32 gradient reduction either way."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    group = shard_group_size or world
    mesh = (init_device_mesh(device.type, (world,)) if group == world else
            init_device_mesh(device.type, (world // group, group),
                             mesh_dim_names=("replicate", "shard")))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(root, mesh=mesh, mp_policy=policy)


def load_from_rank0(model: nn.Module, path: str, dtype: torch.dtype, device: torch.device,
                    io_group: Any) -> None:
    """Fill a sharded model, still on the meta device, with the checkpoint at `path`: rank 0
    reads it (in `dtype`), then every process takes its slices from rank 0's broadcast."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoModelForCausalLM

    model.to_empty(device=device)
    full: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    if dist.get_rank() == 0:
        loaded = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        full, buffers = loaded.state_dict(), dict(loaded.named_buffers())
    dist.barrier(group=io_group)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True,
                                                               broadcast_from_rank0=True))
    persistent = set(model.state_dict())
    for name, buffer in model.named_buffers():
        if name not in persistent:
            if dist.get_rank() == 0:
                buffer.copy_(buffers[name])
            dist.broadcast(buffer, src=0)


def gather_state(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The full state dict on rank 0's host in `dtype`, one tensor gathered at a time (so
    rank 0 holds one copy in the saved dtype, never an fp32 one); empty on the other ranks.
    Every process must call it."""
    from torch.distributed.tensor import DTensor

    state: dict[str, torch.Tensor] = {}
    gathered: dict[int, torch.Tensor | None] = {}  # tied parameters are gathered once
    rank = dist.get_rank()
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key not in gathered:
            full = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
            gathered[key] = full.detach().to("cpu", dtype) if rank == 0 else None
        if rank == 0:
            state[name] = gathered[key]
    return state


def save_checkpoint(out: str, base: str, state: dict[str, torch.Tensor], dtype: torch.dtype,
                    tokenizer: Any) -> None:
    """A plain model from the base config and `state`, saved in `dtype` as Hugging Face."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base), dtype=dtype)
    model.load_state_dict(state, assign=True, strict=False)
    model.tie_weights()
    missing = [k for k, v in model.state_dict().items() if v.is_meta]
    if missing:
        raise RuntimeError(f"finetune: gathered state lacks {missing[:5]}")
    with contextlib.suppress(OSError):  # the base may have no generation_config.json
        model.generation_config = GenerationConfig.from_pretrained(base)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
