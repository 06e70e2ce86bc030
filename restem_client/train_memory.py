"""How much memory one GPU of the M-step needs, estimated from the model's config.json and the
recipe before anything is loaded, so that a plan that cannot fit (a 70B model on too few
GPUs, activations without checkpointing) is refused with the keys to change.

The counts follow what `finetune.py` keeps (docs/finetuning.md, "Memory"), for the decoder
shape transformers' Llama, Mistral, Qwen2 and SmolLM configs describe (hidden_size,
intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size):

- model state, sharded over the shard group (every process, or `shard_group_size` with
  HSDP): fp32 parameters, fp32 gradients and AdamW's two moments, 16 bytes per parameter;
- the parameters FSDP gathers while it computes, in the compute dtype: two decoder layers
  (one computing, one prefetched) and the root's embeddings and output layer;
- activations saved for the backward pass, per position of a micro-batch: per decoder layer
  8 x intermediate + 18 x hidden + 4 x (query + key-value widths) bytes in bf16 (the four
  MLP tensors, RMSNorm's two fp32 upcasts, attention's query, key, value and output, and
  five hidden-width inputs: 110 KiB at Llama 3.2 1B's width, where saved_tensors_hooks
  counted 106 to 113);
  with activation checkpointing, each layer keeps its input and one layer is recomputed;
- the loss: at most two chunks of fp32 logits (train_loss.LOSS_CHUNK_ELEMENTS);
- the CUDA context and the allocator's slack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from restem_client.train_loss import LOSS_CHUNK_ELEMENTS

GiB = 2**30
STATE_BYTES = 16  # per parameter: fp32 weight, fp32 gradient, AdamW's exp_avg and exp_avg_sq
CONTEXT_BYTES = int(1.5 * GiB)  # the CUDA context, NCCL's buffers
SLACK = 1.10  # the caching allocator's fragmentation


@dataclass(frozen=True)
class Shape:
    """The sizes of a decoder-only transformer that memory depends on."""

    hidden: int
    intermediate: int
    layers: int
    q_width: int  # num_attention_heads x head_dim
    kv_width: int  # num_key_value_heads x head_dim
    vocab: int
    tied: bool  # the output layer shares the embedding's weight
    positions: int = 0  # max_position_embeddings (0: the config names none)

    @classmethod
    def from_config(cls, config: dict) -> Shape:
        """From a transformers config.json; ValueError names a key it lacks."""
        try:
            hidden, heads = config["hidden_size"], config["num_attention_heads"]
            head_dim = config.get("head_dim") or hidden // heads
            return cls(hidden, config["intermediate_size"], config["num_hidden_layers"],
                       heads * head_dim, config.get("num_key_value_heads", heads) * head_dim,
                       config["vocab_size"], bool(config.get("tie_word_embeddings", False)),
                       config.get("max_position_embeddings") or 0)
        except KeyError as exc:
            raise ValueError(f"config.json has no {exc.args[0]!r}: not a decoder shape this "
                             "estimate knows") from None

    @classmethod
    def of_checkpoint(cls, model: str | Path) -> Shape:
        path = Path(model) / "config.json"
        if not path.is_file():
            raise ValueError(f"no config.json in {model}")
        return cls.from_config(json.loads(path.read_text()))

    @property
    def layer_parameters(self) -> int:
        h = self.hidden
        attention = 2 * h * self.q_width + 2 * h * self.kv_width  # q and o, k and v
        return attention + 3 * h * self.intermediate + 2 * h  # the MLP, two RMSNorms

    @property
    def root_parameters(self) -> int:
        """The embeddings, the final norm and an untied output layer."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    @property
    def parameters(self) -> int:
        return self.layers * self.layer_parameters + self.root_parameters

    @property
    def layer_activation_bytes(self) -> int:
        """Bytes one decoder layer saves per position for the backward pass, in bf16."""
        return (8 * self.intermediate + 18 * self.hidden + 4 * self.q_width
                + 4 * self.kv_width)


@dataclass(frozen=True)
class Estimate:
    """Bytes per GPU, by part."""

    model_state: int
    gathered: int
    activations: int
    loss: int
    overhead: int

    @property
    def total(self) -> int:
        return self.model_state + self.gathered + self.activations + self.loss + self.overhead

    def describe(self) -> str:
        parts = ", ".join(f"{name.replace('_', ' ')} {getattr(self, name) / GiB:.1f}"
                          for name in ("model_state", "gathered", "activations", "loss",
                                       "overhead"))
        return f"{self.total / GiB:.1f} GiB per GPU ({parts})"


def estimate(shape: Shape, *, processes: int, shard_group_size: int, micro_batch_size: int,
             seq_len: int, activation_checkpointing: bool, fp32: bool = False) -> Estimate:
    """The M-step's peak memory on one GPU for micro-batches of `micro_batch_size` samples
    padded to `seq_len` tokens, sharded over `shard_group_size` processes (0: all)."""
    shard = shard_group_size or processes
    scale = 2 if fp32 else 1  # activations and gathered weights in fp32 rather than bf16
    positions = micro_batch_size * seq_len
    model_state = shape.parameters * STATE_BYTES // shard
    gathered = 0 if shard == 1 else \
        (2 * shape.layer_parameters + shape.root_parameters) * 2 * scale
    if activation_checkpointing:  # each layer's input, and one layer recomputed at a time
        per_position = shape.layers * 2 * shape.hidden + shape.layer_activation_bytes
    else:
        per_position = shape.layers * shape.layer_activation_bytes
    activations = positions * per_position * scale
    loss = 2 * min(LOSS_CHUNK_ELEMENTS, positions * shape.vocab) * 4
    subtotal = model_state + gathered + activations + loss
    overhead = CONTEXT_BYTES + int(subtotal * (SLACK - 1))
    return Estimate(model_state, gathered, activations, loss, overhead)


HEADROOM = 0.9  # of each GPU's memory a plan may use: the estimate is within about 10 %


def check_fits(need: Estimate, gpu_bytes: int, *, processes: int, shard_group_size: int,
               activation_checkpointing: bool) -> None:
    """ConfigError, naming the keys that lower the need, when `need` passes HEADROOM of a
    GPU of `gpu_bytes`."""
    from restem_client.config import ConfigError

    if need.total <= HEADROOM * gpu_bytes:
        return
    changes = []
    if not activation_checkpointing and need.activations > need.model_state / 4:
        changes.append("finetune.activation_checkpointing = true")
    changes.append("a lower finetune.micro_batch_size or finetune.max_seq_len")
    shard = shard_group_size or processes
    if shard_group_size:
        changes.append(f"finetune.shard_group_size = 0 (shard over all {processes} processes, "
                       f"not {shard})")
    changes.append(f"more GPUs (train_workers; the model state is split {shard} ways)")
    raise ConfigError(f"the M-step needs about {need.describe()}, more than "
                      f"{HEADROOM:.0%} of a {gpu_bytes / GiB:.1f} GiB GPU; try "
                      + "; ".join(changes))
