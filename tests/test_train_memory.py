"""The M-step's memory estimate against outside counts: parameter counts of the models
transformers builds from real configs, the bytes autograd saves for the backward pass, the
first H100 check's out-of-memory run, and a 70B plan refused before anything loads."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from restem_client.config import ConfigError
from restem_client.models import resolve
from restem_client.train_loss import CompletionLoss
from restem_client.train_memory import GiB, Shape, check_fits, estimate

# Published shapes (the models' config.json files).
LLAMA_32_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
               "tie_word_embeddings": True}
LLAMA_31_70B = {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
                "tie_word_embeddings": False, "max_position_embeddings": 131072}
H100_BYTES = 81559 * 2**20  # nvidia-smi's memory.total of an H100 80GB HBM3


def _built_parameters(config: dict) -> int:
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**config))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "llama-3.2-1b", "llama-3.1-70b"])
def test_parameter_counts_match_the_models_transformers_builds(name: str) -> None:
    if name == "smollm2-135m-instruct":
        shape = Shape.of_checkpoint(resolve(name))
        import json

        config = json.loads((resolve(name) / "config.json").read_text())
    else:
        config = LLAMA_32_1B if name == "llama-3.2-1b" else LLAMA_31_70B
        shape = Shape.from_config(config)
    assert shape.parameters == _built_parameters(config)
    published = {"smollm2-135m-instruct": 135e6, "llama-3.2-1b": 1.24e9, "llama-3.1-70b": 70.6e9}
    assert abs(shape.parameters / published[name] - 1) < 0.01


def _saved_bytes(config: dict, layers: int, checkpointing: bool) -> int:
    """Bytes autograd saves for the backward pass of CompletionLoss in bf16, parameters
    excluded, on 2 x 128 positions."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**config, num_hidden_layers=layers)).to(torch.bfloat16)
    if checkpointing:
        model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(0, config["vocab_size"], (2, 128))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        CompletionLoss(model)(ids, torch.ones_like(ids), ids, torch.ones(2))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(size for ptr, size in storages.items() if ptr not in weights)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_bytes_per_layer_match_what_autograd_saves(checkpointing: bool) -> None:
    """Two widths, grouped-query and plain attention; the layer's share is the difference
    between 4 and 2 layers, per position."""
    for config in ({"hidden_size": 256, "intermediate_size": 1024, "num_attention_heads": 8,
                    "num_key_value_heads": 2, "vocab_size": 512},
                   {"hidden_size": 512, "intermediate_size": 1376, "num_attention_heads": 8,
                    "num_key_value_heads": 8, "vocab_size": 512}):
        measured = (_saved_bytes(config, 4, checkpointing)
                    - _saved_bytes(config, 2, checkpointing)) / 2 / 256
        shape = Shape.from_config({**config, "num_hidden_layers": 1})
        # With checkpointing a layer keeps only its bf16 input.
        formula = 2 * shape.hidden if checkpointing else shape.layer_activation_bytes
        assert 0.9 < formula / measured < 1.1, (config, measured, formula)


def test_the_h100_out_of_memory_run_is_refused_and_half_its_micro_batch_is_not() -> None:
    """The first H100 check (docs/finetuning.md): Llama 3.2 1B's shape, one process,
    micro-batches of 16 samples padded to 1,853 tokens (29,648 positions), went out of
    memory; the estimate refuses it before loading, and passes micro-batches of 8."""
    shape = Shape.from_config(LLAMA_32_1B)
    plan = {"processes": 1, "shard_group_size": 0, "seq_len": 1853,
            "activation_checkpointing": False}
    need = estimate(shape, micro_batch_size=16, **plan)
    assert 48 * GiB < need.activations < 54 * GiB  # measured: about 51 GiB
    with pytest.raises(ConfigError, match="activation_checkpointing = true"):
        check_fits(need, H100_BYTES, processes=1, shard_group_size=0,
                   activation_checkpointing=False)
    check_fits(estimate(shape, micro_batch_size=8, **plan), H100_BYTES, processes=1,
               shard_group_size=0, activation_checkpointing=False)


def test_a_70b_plan_that_cannot_fit_names_the_keys_and_one_that_fits_passes() -> None:
    shape = Shape.from_config(LLAMA_31_70B)
    hsdp = estimate(shape, processes=32, shard_group_size=8, micro_batch_size=1, seq_len=2048,
                    activation_checkpointing=True)
    assert 140e9 < hsdp.model_state < 142e9  # 16 bytes per parameter over 8 GPUs
    with pytest.raises(ConfigError, match="shard_group_size = 0") as refused:
        check_fits(hsdp, H100_BYTES, processes=32, shard_group_size=8,
                   activation_checkpointing=True)
    assert "GiB per GPU" in str(refused.value)
    fsdp = estimate(shape, processes=32, shard_group_size=0, micro_batch_size=1,
                    seq_len=2048, activation_checkpointing=True)
    check_fits(fsdp, H100_BYTES, processes=32, shard_group_size=0,
               activation_checkpointing=True)
    no_checkpointing = estimate(shape, processes=32, shard_group_size=0, micro_batch_size=4,
                                seq_len=2048, activation_checkpointing=False)
    with pytest.raises(ConfigError, match="activation_checkpointing = true"):
        check_fits(no_checkpointing, H100_BYTES, processes=32, shard_group_size=0,
                   activation_checkpointing=False)


def test_a_config_without_a_decoder_shape_says_which_key_it_lacks() -> None:
    with pytest.raises(ValueError, match="'intermediate_size'"):
        Shape.from_config({"hidden_size": 8, "num_attention_heads": 2})
