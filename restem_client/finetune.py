"""Supervised fine-tuning with FSDP2: the M-step of ReST-EM.

    torchrun --nproc_per_node=8 -m restem_client.finetune CONFIG.toml key=value ...
    python -m restem_client.finetune CONFIG.toml ...      # one process, no torchrun needed

Reads an SFT JSONL (`prompt` as text or chat messages, `completion`, optional `weight`),
fine-tunes a Hugging Face checkpoint with the loss on completion tokens only, and writes an
HF-format checkpoint in the base's dtype that transformers and vLLM load directly.

The loss is the paper's Eq. 3 with a binary reward: each sample's summed token
log-likelihood times its weight, divided by the number of completion tokens in the global
batch. `global_batch_size` is the recipe: each process runs global_batch_size /
(micro_batch_size x processes) micro-batches per step, and since every process can count the
global batch's tokens itself, 1 or N processes compute the same gradient for the same batch.
Gradients stay sharded across micro-batches (reduce-scattered after each one).

This file holds the recipe's keys (`Config`), the script's command line and the training
loop; `restem_client.config` reads config files and `key=value` overrides, the data lives in
`train_data`, the loss in `train_loss`, and sharding, loading from rank 0 and saving in
`train_model`. FSDP2 (`fully_shard` per decoder layer, then the root) runs on NCCL on GPUs and
gloo on the CPU, with bf16 parameters and fp32 reduction on GPUs (`mixed_precision`), or
HSDP (`shard_group_size`) across nodes. A single fp32 process trains the unwrapped module.

Rank 0 reports the plan, warnings and the result on the `restem_client.finetune` logger; the
script's `main` shows them, and its errors, on stderr as `finetune: ...` lines.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from restem_client.config import ConfigError, load_config, to_toml
from restem_client.train_data import read_sft

log = logging.getLogger(__name__)

CUT_WARNING = 0.01  # a run that cuts more than this share of its samples says so loudly

REQUIRED = ("model", "data", "out")  # config keys with no usable default


@dataclass
class Config:
    model: str = ""  # the base HF checkpoint (ReST-EM always starts from the base)
    data: str = ""  # SFT JSONL
    out: str = ""  # where the fine-tuned checkpoint goes
    epochs: int = 1
    max_steps: int = 0  # 0: as many steps as `epochs` make
    global_batch_size: int = 32  # samples per optimizer step, whatever the process count
    micro_batch_size: int = 4  # sequences per process per forward pass
    max_seq_len: int = 0  # prompt + completion tokens, longer samples cut; 0: the longest
    lr: float = 1e-5
    schedule: str = "cosine"  # "cosine" (down to min_lr_ratio * lr) or "constant"
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0: no clipping
    seed: int = 0
    activation_checkpointing: bool = False
    mixed_precision: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU), "bf16" or "fp32"
    shard_group_size: int = 0  # 0: shard over all processes; N: HSDP, N = GPUs per node
    log_file: str = ""  # per-step JSON lines; default <out>/train_log.jsonl

    def validate(self) -> None:
        """The recipe's own rules (config.load_config calls this last)."""
        for name in REQUIRED:
            if not getattr(self, name):
                raise ConfigError(f"config: '{name}' is required")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"config: schedule must be 'cosine' or 'constant', not "
                              f"{self.schedule!r}")
        if self.mixed_precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"config: mixed_precision must be auto, bf16 or fp32, not "
                              f"{self.mixed_precision!r}")
        for name in ("epochs", "global_batch_size", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config: {name} must be at least 1")
        for name in ("max_seq_len", "shard_group_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: {name} must be 0 or more")

    def accumulation(self, world: int) -> int:
        """Micro-batches per process per step for `world` processes (a clear error where the
        global batch does not split evenly, or HSDP groups do not divide the processes)."""
        per_pass = self.micro_batch_size * world
        if self.global_batch_size % per_pass:
            raise ConfigError(f"config: global_batch_size {self.global_batch_size} is not a "
                              f"multiple of micro_batch_size {self.micro_batch_size} x {world} "
                              f"process(es) = {per_pass}")
        if self.shard_group_size and world % self.shard_group_size:
            raise ConfigError(f"config: shard_group_size {self.shard_group_size} does not "
                              f"divide the {world} processes")
        return self.global_batch_size // per_pass


def lr_at(step: int, total: int, config: Config) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------- training


USAGE = """\
usage: torchrun --nproc_per_node=N -m restem_client.finetune [CONFIG] [key=value ...]
       python -m restem_client.finetune [CONFIG] [key=value ...]    (one process)"""


def help_text() -> str:
    """The usage, then every config key with its default, written as TOML (a valid config
    file); the notes are the comments on the Config fields, read from its source."""
    notes = dict(re.findall(r"^\s+(\w+): .*?  # (.*)$", inspect.getsource(Config), re.M))
    keys = []
    for f in fields(Config):
        line = to_toml({f.name: getattr(Config(), f.name)}).rstrip()
        keys.append(f"  {line:<32} # {f.type}" + (f": {notes[f.name]}" if f.name in notes
                                                    else ""))
    return "\n".join([
        USAGE, "", __doc__.splitlines()[0], "",
        "CONFIG is a TOML (or JSON) file of the keys below; each key=value then sets one key.",
        f"Keys and their defaults ({', '.join(REQUIRED)} must be set):", *keys])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _show_log()
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return 0
    if options := [a for a in argv if a.startswith("-")]:
        log.error(f"unknown option {options[0]!r} (see --help)")
        return 2
    path = argv[0] if argv and "=" not in argv[0] else None
    overrides = argv[1:] if path else argv
    try:
        config = load_config(Config, path, overrides)
        from restem_client.models import check_checkpoint

        check_checkpoint(config.model)
        records = read_sft(config.data)
    except (ValueError, FileNotFoundError) as exc:  # ConfigError is a ValueError
        log.error(str(exc))
        return 2
    from restem_client.train_model import SetupError

    try:
        train(config, records)
    except (ConfigError, SetupError) as exc:  # raised before any training, alike on all ranks
        if os.environ.get("RANK", "0") == "0":
            log.error(str(exc))
        return 2
    return 0


def _show_log() -> None:
    """The script's stderr: this module's log records as `finetune: ...` lines, set up once
    per process (Ray Train may call main again in the same worker)."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("finetune: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # shown here, not again by a handler a launcher put on the root


def train(config: Config, records: list[dict[str, Any]]) -> None:
    """Fine-tune as `config` says and write the checkpoint, its step log and its summary.
    Errors of the machine, the model or the split raise before the process group starts."""
    import torch
    import torch.distributed as dist
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from restem_client.train_data import sequence_limit, tokenize, truncate
    from restem_client.train_loss import CompletionLoss
    from restem_client.train_model import (
        IO_TIMEOUT,
        decoder_layers,
        load_from_rank0,
        shard,
        training_device,
    )

    # One process without torchrun is a world of one. A launcher that started the process
    # group itself (Ray Train) keeps it: the script uses it and leaves it open.
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"),
                        ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    owned = not dist.is_initialized()
    world = int(os.environ["WORLD_SIZE"]) if owned else dist.get_world_size()
    accumulation = config.accumulation(world)
    device = training_device(int(os.environ["LOCAL_RANK"]))
    base = AutoConfig.from_pretrained(config.model)
    save_dtype = base.dtype or torch.float32  # the base's dtype, not the training one
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(base, dtype=torch.float32)
    layers = decoder_layers(model)
    torch.manual_seed(config.seed)

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    examples = tokenize(records, tokenizer)
    max_seq_len = sequence_limit(config.max_seq_len, examples,
                                 getattr(base, "max_position_embeddings", None))
    examples, cut = truncate(examples, max_seq_len)

    bf16 = config.mixed_precision == "bf16" or (config.mixed_precision == "auto"
                                                and device.type == "cuda")
    # One fp32 process has nothing to shard or cast: wrapped, it ran at 0.75x of a plain loop
    # on CPU, unwrapped at 0.99x (bench/finetune.py). bf16 keeps FSDP for its casting policy.
    sharded = world > 1 or bf16
    if owned:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        io_group = dist.new_group(backend="gloo", timeout=IO_TIMEOUT)
        if not sharded:
            model = AutoModelForCausalLM.from_pretrained(config.model, dtype=torch.float32)
            model.to(device)
        if config.activation_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        module = CompletionLoss(model)
        if sharded:
            shard(module, layers, device, world, config.shard_group_size,
                  torch.bfloat16 if bf16 else torch.float32)
            load_from_rank0(model, config.model, save_dtype, device, io_group)
        plan = {"samples": len(examples), "max_seq_len": max_seq_len, "cut_samples": cut,
                "processes": world, "device": device.type,
                "precision": "bf16" if bf16 else "fp32",
                "sharding": _sharding(sharded, world, config.shard_group_size or world),
                "global_batch_size": config.global_batch_size,
                "micro_batch_size": config.micro_batch_size, "accumulation": accumulation}
        summary = _fit(config, module, examples, pad_id, plan, device)
        _save(config, model, save_dtype, tokenizer, summary, io_group)
    finally:
        if owned:
            dist.destroy_process_group()


def _fit(config: Config, module: Any, examples: list[dict[str, Any]], pad_id: int,
         plan: dict[str, Any], device: Any) -> dict[str, Any]:
    """The training steps; returns the run summary (complete on rank 0)."""
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    from restem_client.train_data import collate, epoch_batches, loss_tokens

    rank, world = dist.get_rank(), dist.get_world_size()
    micro, accumulation = config.micro_batch_size, plan["accumulation"]
    steps_per_epoch = math.ceil(len(examples) / config.global_batch_size)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    lengths = [len(e["input_ids"]) for e in examples]
    module.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr,
                                  betas=(config.beta1, config.beta2),
                                  weight_decay=config.weight_decay,
                                  fused=device.type == "cuda" or None)
    warning = _cut_warning(plan)
    log_path = Path(config.log_file or Path(config.out) / "train_log.jsonl")
    if rank == 0:
        Path(config.out).mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        step_log = log_path.open("w")
        log.info(f"{plan['samples']} samples, max_seq_len {plan['max_seq_len']} "
                 f"({'set' if config.max_seq_len else 'the longest sample'}; "
                 f"{plan['cut_samples']} cut), {world} process(es) on {device.type}, "
                 f"{plan['precision']}, sharding: {plan['sharding']}; global batch "
                 f"{config.global_batch_size} = {micro} x {accumulation} accumulation x "
                 f"{world} process(es); {total_steps} steps")
        if warning:
            log.warning(warning)
    progress = tqdm(total=total_steps, desc="fine-tuning", unit="step", disable=rank != 0)
    entries: list[dict[str, Any]] = []
    batches: list[list[int]] = []
    started = time.perf_counter()
    for step in range(total_steps):
        if step % steps_per_epoch == 0:
            batches = epoch_batches(lengths, config.global_batch_size, config.seed,
                                    step // steps_per_epoch)
        batch = [examples[i] for i in batches[step % steps_per_epoch]]
        tokens = sum(loss_tokens(e) for e in batch)  # the same number on every rank
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, config)
        loss_sum = torch.zeros((), device=device)
        for index in range(accumulation):
            start = (index * world + rank) * micro
            inputs = {k: v.to(device) for k, v in
                      collate(batch[start:start + micro], pad_id).items()}
            loss = module(**inputs) / max(tokens, 1)
            # FSDP averages gradients over processes; the loss is already a global mean.
            # Each backward reduce-scatters, so accumulated gradients stay sharded.
            (loss * world).backward()
            loss_sum += loss.detach()
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(),
                                              config.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dist.all_reduce(loss_sum)
        if rank == 0:
            loss_value = loss_sum.item()  # waits for the device, so the clock below is true
            entry = {"step": step + 1, "loss": loss_value,
                     "lr": optimizer.param_groups[0]["lr"], "grad_norm": _full(norm),
                     "tokens": tokens, "input_tokens": sum(len(e["input_ids"]) for e in batch),
                     "seq_len_sq": sum(len(e["input_ids"]) ** 2 for e in batch),
                     "elapsed_s": round(time.perf_counter() - started, 3)}
            entries.append(entry)
            step_log.write(json.dumps(entry) + "\n")
            step_log.flush()
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{entry['lr']:.2e}")
        progress.update()
    progress.close()
    peaks: list[Any] = [None] * world
    dist.all_gather_object(peaks, _peak_memory(device))
    if rank != 0:
        return {}
    step_log.close()
    timed = entries[1:] or entries  # the first step (warm-up, allocation) is not timed
    seconds = entries[-1]["elapsed_s"] - (entries[0]["elapsed_s"] if entries[1:] else 0)
    return {**plan, "steps": total_steps, "first_loss": entries[0]["loss"],
            "last_loss": entries[-1]["loss"], "train_s": entries[-1]["elapsed_s"],
            "input_tokens_per_s": round(sum(e["input_tokens"] for e in timed) / seconds, 1),
            "peak_host_gib": [p[0] for p in peaks],
            "peak_gpu_gib": [p[1] for p in peaks] if device.type == "cuda" else None,
            "warnings": [warning] if warning else []}


def _sharding(sharded: bool, world: int, group: int) -> str:
    if not sharded:
        return "none"
    return f"FSDP over {world}" if group == world else f"HSDP {world // group} x {group}"


def _cut_warning(plan: dict[str, Any]) -> str | None:
    cut, count = plan["cut_samples"], plan["samples"]
    if cut <= CUT_WARNING * count:
        return None
    return (f"WARNING: {cut} of {count} samples ({100 * cut / count:.1f} %) are longer than "
            f"max_seq_len={plan['max_seq_len']} and lose their ends (often the final answer); "
            "raise max_seq_len, or set 0 for the longest sample")


def _peak_memory(device: Any) -> tuple[float, float | None]:
    """This process's peak host memory (RSS) and peak GPU memory allocated, in GiB."""
    import torch

    host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    gpu = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return round(host, 3), None if gpu is None else round(gpu, 3)


def _save(config: Config, model: Any, dtype: Any, tokenizer: Any, summary: dict[str, Any],
          io_group: Any) -> None:
    """Rank 0 writes the checkpoint, the config and the summary; the others wait for it in
    the long-timeout gloo group (see train_model)."""
    import torch.distributed as dist

    from restem_client.train_model import gather_state, save_checkpoint

    state = gather_state(model, dtype)
    if dist.get_rank() == 0:
        started = time.perf_counter()
        save_checkpoint(config.out, config.model, state, dtype, tokenizer)
        out = Path(config.out)
        (out / "restem-finetune.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
        summary.update(saved_dtype=str(dtype).removeprefix("torch."),
                       save_s=round(time.perf_counter() - started, 3))
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info(f"wrote {config.out} ({summary['saved_dtype']}): {summary['steps']} steps, "
                 f"loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}, "
                 f"{summary['input_tokens_per_s']:.0f} tokens/s")
        for warning in summary["warnings"]:
            log.warning(warning)
    dist.barrier(group=io_group)


def _full(value: Any) -> float:
    return float(value.full_tensor() if hasattr(value, "full_tensor") else value)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
