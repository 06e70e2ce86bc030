"""Fine-tuning data: SFT records, their tokens, the sequence-length limit, and the batches.

A record is `prompt` (text or chat messages), `completion` and an optional `weight`. Its
example is `input_ids` and `labels` (IGNORE on prompt positions). The length limit is
derived from the data unless set, and the samples it cuts are counted. Each epoch is a
seeded shuffle cut into global batches; inside a global batch the samples are sorted by
length, so that each micro-batch pads little. The sort changes only how a global batch is
split into micro-batches, never which samples it holds, so the gradient is that of the plain
shuffle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IGNORE = -100  # label of positions that carry no loss


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


def tokenize(records: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """input_ids and labels (IGNORE on prompt positions), uncut; the completion ends with
    EOS. Prompt and completion are tokenized apart, as the sampler saw them."""
    from restem_client.sampling import prompt_ids

    examples = []
    for record in records:
        prompt = prompt_ids(tokenizer, record["prompt"])
        answer = tokenizer(record["completion"], add_special_tokens=False).input_ids
        answer.append(tokenizer.eos_token_id)
        examples.append({"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer,
                         "weight": record.get("weight", 1.0)})
    return examples


def sequence_limit(configured: int, examples: list[dict[str, Any]],
                   model_positions: int | None) -> int:
    """`configured` when set (> 0); else the longest example, capped by the model's
    positions (None: the model names no limit)."""
    if configured > 0:
        return configured
    longest = max(len(e["input_ids"]) for e in examples)
    return min(longest, model_positions) if model_positions else longest


def truncate(examples: list[dict[str, Any]], max_seq_len: int
             ) -> tuple[list[dict[str, Any]], int]:
    """The examples cut on the right to `max_seq_len`, and how many were longer."""
    cut = sum(len(e["input_ids"]) > max_seq_len for e in examples)
    return [{**e, "input_ids": e["input_ids"][:max_seq_len],
             "labels": e["labels"][:max_seq_len]} for e in examples], cut


def loss_tokens(example: dict[str, Any]) -> int:
    """Positions that predict a completion token (labels shifted by one)."""
    return sum(label != IGNORE for label in example["labels"][1:])


def epoch_batches(lengths: list[int], global_batch: int, seed: int, epoch: int
                  ) -> list[list[int]]:
    """The epoch's global batches as sample indices: a seeded shuffle, wrapped around so that
    the last batch is full, each batch sorted longest first (ties by index). Longest first
    also makes the first micro-batch the largest, so a batch that does not fit fails at once.
    """
    import torch

    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    short = -len(order) % global_batch
    order += (order * (short // len(lengths) + 1))[:short]
    return [sorted(order[i:i + global_batch], key=lambda k: (-lengths[k], k))
            for i in range(0, len(order), global_batch)]


def collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, labels (IGNORE on padding), attention_mask, weights."""
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
