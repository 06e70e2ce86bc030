"""Supervised fine-tuning with FSDP: the M-step of ReST-EM, one script read top to bottom.

    torchrun --nproc_per_node=8 -m restem_client.finetune CONFIG.toml key=value ...
    python -m restem_client.finetune CONFIG.toml ...      # one process, no torchrun needed

Reads an SFT JSONL (`prompt` as text or chat messages, `completion`, optional `weight`),
fine-tunes a Hugging Face checkpoint with the loss on completion tokens only, and writes an
HF-format checkpoint (gathered on rank 0) that transformers and vLLM load directly.

The loss is the paper's Eq. 3 with a binary reward: each sample's summed token
log-likelihood times its weight, divided by the number of completion tokens in the global
batch. Every rank can count those tokens itself, so 1 or N processes, with any split between
processes and accumulation steps, compute the same gradient for the same global batch.

Sharding is FSDP2 (`fully_shard` per decoder layer, then the root), NCCL on GPU and gloo on
CPU; bf16 parameters with fp32 reduction on GPU (`mixed_precision`), fp32 on CPU. A single
fp32 process (the CPU demo) trains the unwrapped module: there is nothing to shard.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

IGNORE = -100  # label of positions that carry no loss


REQUIRED = ("model", "data", "out")  # config keys with no usable default


@dataclass
class Config:
    model: str = ""  # the base HF checkpoint (ReST-EM always starts from the base)
    data: str = ""  # SFT JSONL
    out: str = ""  # where the fine-tuned checkpoint goes
    epochs: int = 1
    max_steps: int = 0  # 0: as many steps as `epochs` make
    micro_batch_size: int = 4  # sequences per process per forward pass
    grad_accum: int = 1  # global batch = micro_batch_size * grad_accum * processes
    max_seq_len: int = 1024  # prompt + completion tokens; longer samples are cut on the right
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
    log_file: str = ""  # per-step JSON lines; default <out>/train_log.jsonl

    def check(self) -> None:
        for name in REQUIRED:
            if not getattr(self, name):
                raise ConfigError(f"config: '{name}' is required")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"config: schedule must be 'cosine' or 'constant', not "
                              f"{self.schedule!r}")
        if self.mixed_precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"config: mixed_precision must be auto, bf16 or fp32, not "
                              f"{self.mixed_precision!r}")
        for name in ("epochs", "micro_batch_size", "grad_accum", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config: {name} must be at least 1")


class ConfigError(ValueError):
    pass


def load_config(path: str | None, overrides: list[str]) -> Config:
    """A TOML (or JSON) file, then `key=value` overrides, typed by the Config fields."""
    values: dict[str, Any] = {}
    if path:
        text = Path(path).read_text()
        values = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
    kinds = {f.name: f.type for f in fields(Config)}
    for item in overrides:
        name, value = parse_override(item, kinds)
        values[name] = value
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}")
    config = Config(**values)
    config.check()
    return config


def parse_override(item: str, kinds: dict[str, str], prefix: str = "") -> tuple[str, Any]:
    """A `key=value` override as (field, typed value); `kinds` are a dataclass's field types
    (strings, under `from __future__ import annotations`), `prefix` a table name."""
    key, sep, raw = item.partition("=")
    if not sep:
        raise ConfigError(f"override {item!r} is not key=value")
    name = key.removeprefix(prefix)
    if name not in kinds:
        raise ConfigError(f"unknown config key {key!r}")
    kind = kinds[name]
    try:
        if kind == "bool":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return name, raw.lower() in ("true", "1")
        return name, {"int": int, "float": float, "str": str}[kind](raw)
    except (KeyError, ValueError):
        raise ConfigError(f"config: {key}={raw!r} is not a valid {kind}") from None


# ----------------------------------------------------------------------------- data


def read_sft(path: str | Path) -> list[dict[str, Any]]:
    """The SFT records; a bad line fails with its number before any work starts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT data not found: {path}")
    records = []
    with path.open() as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: not a JSON object")
            for name in ("prompt", "completion"):
                if name not in record:
                    raise ValueError(f"{where}: missing field {name!r}")
            prompt, completion = record["prompt"], record["completion"]
            if not (isinstance(prompt, str) or _is_chat(prompt)):
                raise ValueError(f"{where}: 'prompt' must be text or a list of "
                                 "{role, content} messages")
            if not isinstance(completion, str) or not completion.strip():
                raise ValueError(f"{where}: 'completion' is empty")
            weight = record.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise ValueError(f"{where}: 'weight' must be a number >= 0")
            records.append({"prompt": prompt, "completion": completion,
                            "weight": float(weight)})
    if not records:
        raise ValueError(f"{path}: no SFT records")
    return records


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str)
        and isinstance(m.get("content"), str) for m in value)


def tokenize(records: list[dict[str, Any]], tokenizer: Any, max_seq_len: int
             ) -> list[dict[str, Any]]:
    """input_ids and labels (IGNORE on prompt positions); the completion ends with EOS.
    Prompt and completion are tokenized apart, as the sampler saw them."""
    from restem_client.sampling import prompt_ids

    examples = []
    for record in records:
        prompt = prompt_ids(tokenizer, record["prompt"])
        answer = tokenizer(record["completion"], add_special_tokens=False).input_ids
        answer.append(tokenizer.eos_token_id)
        ids = (prompt + answer)[:max_seq_len]
        labels = ([IGNORE] * len(prompt) + answer)[:max_seq_len]
        examples.append({"input_ids": ids, "labels": labels, "weight": record.get("weight", 1.0)})
    return examples


def collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    weights = torch.tensor([e["weight"] for e in examples], dtype=torch.float32)
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "weights": weights}


def loss_tokens(example: dict[str, Any]) -> int:
    """Positions that predict a completion token (labels shifted by one)."""
    return sum(label != IGNORE for label in example["labels"][1:])


def weighted_loss_sum(logits: Any, labels: Any, weights: Any) -> Any:
    """Sum over samples of weight * summed next-token cross-entropy on unmasked labels."""
    import torch.nn.functional as F

    shifted = labels[:, 1:]
    per_token = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), shifted,
                                ignore_index=IGNORE, reduction="none")
    return (per_token.sum(dim=1) * weights.to(per_token.device)).sum()


def epoch_order(count: int, global_batch: int, seed: int, epoch: int) -> list[int]:
    """A seeded shuffle, wrapped around so that every global batch is full."""
    import torch

    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(count, generator=generator).tolist()
    short = -len(order) % global_batch
    return order + (order * (short // count + 1))[:short]


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
        line = f"{f.name} = {json.dumps(getattr(Config(), f.name))}"  # JSON scalars are TOML
        keys.append(f"  {line:<32} # {f.type}" + (f": {notes[f.name]}" if f.name in notes
                                                    else ""))
    return "\n".join([
        USAGE, "", __doc__.splitlines()[0], "",
        "CONFIG is a TOML (or JSON) file of the keys below; each key=value then sets one key.",
        f"Keys and their defaults ({', '.join(REQUIRED)} must be set):", *keys])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return 0
    if options := [a for a in argv if a.startswith("-")]:
        print(f"finetune: unknown option {options[0]!r} (see --help)", file=sys.stderr)
        return 2
    path = argv[0] if argv and "=" not in argv[0] else None
    overrides = argv[1:] if path else argv
    try:
        config = load_config(path, overrides)
        from restem_client.models import check_checkpoint

        check_checkpoint(config.model)
        records = read_sft(config.data)
    except (ConfigError, ValueError, FileNotFoundError, tomllib.TOMLDecodeError) as exc:
        print(f"finetune: {exc}", file=sys.stderr)
        return 2
    train(config, records)
    return 0


def train(config: Config, records: list[dict[str, Any]]) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # One process without torchrun is a world of one.
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if on_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    torch.manual_seed(config.seed)

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    examples = tokenize(records, tokenizer, config.max_seq_len)
    global_batch = config.micro_batch_size * config.grad_accum * world
    steps_per_epoch = math.ceil(len(examples) / global_batch)
    total_steps = config.max_steps or steps_per_epoch * config.epochs

    model = AutoModelForCausalLM.from_pretrained(config.model, dtype=torch.float32)
    save_dtype = getattr(model.config, "dtype", None) or torch.float32
    model.config.use_cache = False
    if config.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    bf16 = config.mixed_precision == "bf16" or (config.mixed_precision == "auto" and on_gpu)
    # One fp32 process has nothing to shard or cast: wrapped, it ran at 0.75x of a plain loop
    # on CPU, unwrapped at 0.99x (bench/finetune.py). bf16 keeps FSDP for its casting policy.
    sharded = world > 1 or bf16
    if sharded:
        from torch.distributed.device_mesh import init_device_mesh

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else torch.float32,
                                      reduce_dtype=torch.float32)
        mesh = init_device_mesh(device.type, (world,))
        block_names = set(getattr(model, "_no_split_modules", None) or ())
        for module in model.modules():
            if type(module).__name__ in block_names:
                fully_shard(module, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  betas=(config.beta1, config.beta2),
                                  weight_decay=config.weight_decay,
                                  fused=on_gpu or None)

    log_path = Path(config.log_file or Path(config.out) / "train_log.jsonl")
    if rank == 0:
        Path(config.out).mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("w")
        print(f"finetune: {len(examples)} samples, {world} process(es) on {device.type}, "
              f"global batch {global_batch}, {total_steps} steps", file=sys.stderr)
    progress = tqdm(total=total_steps, desc="fine-tuning", unit="step", disable=rank != 0)
    step, epoch, order = 0, 0, []
    started = time.perf_counter()
    while step < total_steps:
        if step % steps_per_epoch == 0:
            order = epoch_order(len(examples), global_batch, config.seed, epoch)
            epoch += 1
        first = (step % steps_per_epoch) * global_batch
        batch = [examples[i] for i in order[first:first + global_batch]]
        tokens = sum(loss_tokens(e) for e in batch)  # the same number on every rank
        seen = sum(len(e["input_ids"]) for e in batch)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, config)
        loss_sum = torch.zeros((), device=device)
        for micro in range(config.grad_accum):
            start = (micro * world + rank) * config.micro_batch_size
            inputs = collate(batch[start:start + config.micro_batch_size], pad_id)
            if sharded:
                model.set_requires_gradient_sync(micro == config.grad_accum - 1)
            logits = model(input_ids=inputs["input_ids"].to(device),
                           attention_mask=inputs["attention_mask"].to(device)).logits
            loss = weighted_loss_sum(logits, inputs["labels"].to(device),
                                     inputs["weights"]) / max(tokens, 1)
            # FSDP averages gradients over processes; the loss is already a global mean.
            (loss * world).backward()
            loss_sum += loss.detach()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                              config.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dist.all_reduce(loss_sum)
        step += 1
        if rank == 0:
            loss_value = loss_sum.item()  # waits for the device, so the clock below is true
            elapsed = time.perf_counter() - started
            entry = {"step": step, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"],
                     "grad_norm": _full(norm), "tokens": tokens, "input_tokens": seen,
                     "elapsed_s": round(elapsed, 3)}
            log.write(json.dumps(entry) + "\n")
            log.flush()
            progress.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{entry['lr']:.2e}")
        progress.update()
    progress.close()

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                 cpu_offload=True))
    if rank == 0:
        log.close()
        _save(config, state, save_dtype, tokenizer)
        print(f"finetune: wrote {config.out}", file=sys.stderr)
    dist.barrier()
    dist.destroy_process_group()


def _save(config: Config, state: dict[str, Any], dtype: Any, tokenizer: Any) -> None:
    """A plain (unsharded) model from the base config and the gathered state, saved as HF."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    base = AutoConfig.from_pretrained(config.model)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(base, dtype=torch.float32)
    model.load_state_dict(state, assign=True, strict=False)
    model.tie_weights()
    missing = [k for k, v in model.state_dict().items() if v.is_meta]
    if missing:
        raise RuntimeError(f"finetune: gathered state lacks {missing[:5]}")
    model.to(dtype)
    with contextlib.suppress(OSError):  # the base may have no generation_config.json
        model.generation_config = GenerationConfig.from_pretrained(config.model)
    model.save_pretrained(config.out)
    tokenizer.save_pretrained(config.out)
    (Path(config.out) / "restem-finetune.json").write_text(
        json.dumps(asdict(config), indent=2) + "\n")


def _full(value: Any) -> float:
    return float(value.full_tensor() if hasattr(value, "full_tensor") else value)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
