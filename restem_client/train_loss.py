"""The fine-tuning loss at completion positions only, in chunks, never as full-sequence logits.

The paper's Eq. 3 with a binary reward: each sample's summed token log-likelihood times its
weight. The decoder's hidden states are taken at the positions that predict a completion
token; the output layer and the cross-entropy run over those rows in chunks of at most
LOSS_CHUNK_ELEMENTS logits. Every chunk but the last is checkpointed (its logits are
recomputed in the backward pass), so at most two chunks of fp32 logits exist at once,
whatever the sequence length and vocabulary: the prompt positions, often most of a MATH
sample, get no logits at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from restem_client.train_data import IGNORE

LOSS_CHUNK_ELEMENTS = 2**27  # logits per chunk: 512 MiB in fp32

def completion_loss_sum(hidden: torch.Tensor, head: torch.Tensor, labels: torch.Tensor,
                        weights: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    """Sum over samples of weight * summed next-token cross-entropy on unmasked labels.
    `hidden` [batch, seq, width] are the decoder's outputs, `head` [vocab, width] the output
    layer's weight, `chunk_rows` the completion positions per chunk."""
    mask = labels[:, 1:] != IGNORE
    rows = hidden[:, :-1][mask]
    targets = labels[:, 1:][mask]
    token_weights = weights.to(hidden.device)[mask.nonzero(as_tuple=True)[0]]
    if not len(targets):
        # No completion token here, but every parameter still needs a gradient (zero), or
        # the FSDP processes would reduce different sets of gradients and hang.
        return (hidden.sum() + head.sum()) * 0.0
    parts = range(0, len(targets), chunk_rows)
    total = torch.zeros((), device=hidden.device, dtype=torch.float32)
    for start in parts:
        chunk = (rows[start:start + chunk_rows], head, targets[start:start + chunk_rows],
                 token_weights[start:start + chunk_rows])
        last = start == parts[-1]
        total = total + (_chunk_loss(*chunk) if last
                         else checkpoint(_chunk_loss, *chunk, use_reentrant=False))
    return total


def _chunk_loss(rows: torch.Tensor, head: torch.Tensor, targets: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
    logits = F.linear(rows, head).float()
    return (F.cross_entropy(logits, targets, reduction="none") * weights).sum()


class CompletionLoss(torch.nn.Module):
    """A causal LM with the loss in its forward. It is FSDP's root module: one call of it
    gathers the parameters outside the decoder layers (embeddings, final norm, output
    layer), which the loss uses directly instead of the model's own logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        vocab = model.get_output_embeddings().weight.shape[0]
        self.chunk_rows = max(1, LOSS_CHUNK_ELEMENTS // vocab)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        hidden = self.model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                          use_cache=False).last_hidden_state
        return completion_loss_sum(hidden, self.model.get_output_embeddings().weight, labels,
                                   weights, self.chunk_rows)
