"""The FSDP fine-tuning script: masking, the chunked loss, length-grouped batches, the length
limit, config, input and setup errors, the sharded meta-device load against a plain load (one
gloo process), and real torchrun runs on CPU with gloo: 2 processes against 1 and sharded
accumulation (with HSDP and activation checkpointing) against none, for the same global
batch; a bf16 base that round-trips exactly through rank 0's broadcast and the save, in its
own dtype, and reloads and generates."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from restem_client.config import ConfigError, load_config
from restem_client.finetune import Config, lr_at
from restem_client.train_data import (
    IGNORE,
    collate,
    epoch_batches,
    read_sft,
    sequence_limit,
    tokenize,
    truncate,
)
from restem_client.train_loss import completion_loss_sum
from restem_client.train_model import SetupError, decoder_layers
from tests.conftest import REPO, write_jsonl

RECORDS = [{"prompt": f"Q: {a} + {b} = ?\nA:", "completion": f" {a + b}. The answer is {a + b}."}
           for a in range(8) for b in range(4)]


@pytest.fixture(scope="module")
def tokenizer(smollm2: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


def test_prompt_positions_are_masked_in_the_labels(tokenizer) -> None:
    example = tokenize(RECORDS[:1], tokenizer)[0]
    prompt_len = len(tokenizer(RECORDS[0]["prompt"]).input_ids)
    assert example["labels"][:prompt_len] == [IGNORE] * prompt_len
    assert example["labels"][prompt_len:] == example["input_ids"][prompt_len:]
    assert example["labels"][-1] == tokenizer.eos_token_id  # the model learns to stop


def _hidden_and_head(model_dir: Path, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    hidden = model.get_decoder()(input_ids=batch["input_ids"],
                                 attention_mask=batch["attention_mask"]).last_hidden_state
    return hidden.detach().requires_grad_(), model.get_output_embeddings().weight


def test_prompt_positions_get_no_gradient(tokenizer, tiny_model: Path) -> None:
    examples = tokenize(RECORDS[:3], tokenizer)
    batch = collate(examples, tokenizer.pad_token_id)
    hidden, head = _hidden_and_head(tiny_model, batch)
    completion_loss_sum(hidden, head, batch["labels"], batch["weights"], 4).backward()
    per_position = hidden.grad.abs().sum(dim=-1)  # position t predicts token t + 1
    for row, example in enumerate(examples):
        prompt_len = example["labels"].index(next(x for x in example["labels"] if x != IGNORE))
        length = len(example["input_ids"])
        assert torch.all(per_position[row, :prompt_len - 1] == 0)
        assert torch.all(per_position[row, prompt_len - 1:length - 1] > 0)
        assert torch.all(per_position[row, length - 1:] == 0)  # last token and padding


def test_weight_scales_each_samples_loss(tokenizer, tiny_model: Path) -> None:
    batch = collate(tokenize(RECORDS[:2], tokenizer), tokenizer.pad_token_id)
    hidden, head = _hidden_and_head(tiny_model, batch)
    with torch.no_grad():
        def loss(weights: list[float]) -> torch.Tensor:
            return completion_loss_sum(hidden, head, batch["labels"], torch.tensor(weights), 8)

        ones, first, second = loss([1.0, 1.0]), loss([1.0, 0.0]), loss([0.0, 3.0])
    assert torch.allclose(ones, first + second / 3, rtol=1e-5)


def test_chunked_loss_equals_the_full_logits_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 11, 16, generator=generator)
    head = torch.randn(50, 16, generator=generator)
    labels = torch.randint(0, 50, (3, 11), generator=generator)
    labels[0, :4] = labels[1, :7] = labels[2, 9:] = IGNORE  # prompts and padding
    weights = torch.tensor([1.0, 0.5, 2.0])

    def grads(chunk_rows: int | None) -> tuple[torch.Tensor, ...]:
        h, w = hidden.clone().requires_grad_(), head.clone().requires_grad_()
        if chunk_rows is None:  # the plain way: fp32 logits at every position
            per_token = F.cross_entropy((h @ w.T)[:, :-1].transpose(1, 2), labels[:, 1:],
                                        ignore_index=IGNORE, reduction="none")
            loss = (per_token.sum(dim=1) * weights).sum()
        else:
            loss = completion_loss_sum(h, w, labels, weights, chunk_rows)
        loss.backward()
        return loss.detach(), h.grad, w.grad

    full = grads(None)
    for chunk_rows in (1, 4, 1000):  # many chunks (all checkpointed but the last), and one
        for a, b in zip(grads(chunk_rows), full, strict=True):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    # A micro-batch without completion tokens still gives every parameter a (zero) gradient.
    h, w = hidden.clone().requires_grad_(), head.clone().requires_grad_()
    completion_loss_sum(h, w, torch.full_like(labels, IGNORE), weights, 4).backward()
    assert torch.equal(h.grad, torch.zeros_like(h)) and torch.equal(w.grad, torch.zeros_like(w))


def test_batches_are_the_seeded_shuffle_sorted_by_length() -> None:
    lengths = [(7 * i) % 23 + 1 for i in range(30)]
    batches = epoch_batches(lengths, 8, seed=1, epoch=0)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(1000)).tolist()
    order += order[:2]  # wrapped so that the last global batch is full
    assert [sorted(b) for b in batches] == [sorted(order[i:i + 8]) for i in range(0, 32, 8)]
    for batch in batches:  # longest first, so each micro-batch holds similar lengths
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    assert epoch_batches(lengths, 8, seed=1, epoch=0) == batches
    assert epoch_batches(lengths, 8, seed=1, epoch=1) != batches


def test_max_seq_len_is_derived_from_the_data_and_cuts_are_counted(tokenizer) -> None:
    examples = tokenize(RECORDS, tokenizer)
    longest = max(len(e["input_ids"]) for e in examples)
    assert sequence_limit(0, examples, 512) == longest
    assert sequence_limit(0, examples, 10) == 10  # capped by the model's positions
    assert sequence_limit(0, examples, None) == longest
    assert sequence_limit(7, examples, 512) == 7  # a set limit wins
    cut, count = truncate(examples, longest - 1)
    assert count == sum(len(e["input_ids"]) == longest for e in examples) > 0
    assert max(len(e["input_ids"]) for e in cut) == longest - 1
    assert all(len(e["labels"]) == len(e["input_ids"]) for e in cut)
    assert truncate(examples, longest)[1] == 0


def test_global_batch_must_split_evenly_over_processes() -> None:
    config = Config(model="m", data="d", out="o", global_batch_size=16, micro_batch_size=4)
    assert [config.accumulation(world) for world in (1, 2, 4)] == [4, 2, 1]
    with pytest.raises(ConfigError, match="global_batch_size 16 is not a multiple of "
                                          r"micro_batch_size 4 x 8 process\(es\) = 32"):
        config.accumulation(8)
    config.shard_group_size = 3
    with pytest.raises(ConfigError, match="shard_group_size 3 does not divide the 4 processes"):
        config.accumulation(4)


def test_the_sharded_meta_device_load_equals_a_plain_load(tmp_path: Path,
                                                         tiny_model: Path) -> None:
    import torch.distributed as dist
    from transformers import AutoConfig, AutoModelForCausalLM

    from restem_client.train_loss import CompletionLoss
    from restem_client.train_model import load_from_rank0, shard

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model))
        shard(CompletionLoss(model), decoder_layers(model), torch.device("cpu"), 1, 0,
              torch.float32)
        load_from_rank0(model, str(tiny_model), torch.float32, torch.device("cpu"),
                        dist.group.WORLD)
        plain = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        loaded = model.state_dict()
        assert loaded.keys() == plain.state_dict().keys()
        for name, tensor in plain.state_dict().items():
            assert torch.equal(loaded[name].full_tensor(), tensor), name
        # Buffers no checkpoint holds (rotary frequencies) are the constructor's, not junk.
        buffers = dict(model.named_buffers())
        for name, buffer in plain.named_buffers():
            assert torch.equal(buffers[name], buffer), name
        assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    finally:
        dist.destroy_process_group()


def test_layers_that_match_no_split_modules_are_required(tiny_model: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model))
    assert len(decoder_layers(model)) == 2
    model._no_split_modules = ["LlamaBlock"]
    with pytest.raises(SetupError, match=r"_no_split_modules \['LlamaBlock'\] match none"):
        decoder_layers(model)


def test_config_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('model = "m"\ndata = "d"\nout = "o"\nlr = 0.001\n')
    config = load_config(Config, path, ["lr=2e-5", "activation_checkpointing=true", "epochs=3"])
    assert (config.lr, config.activation_checkpointing, config.epochs) == (2e-5, True, 3)
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        load_config(Config, path, ["learning_rate=1"])
    with pytest.raises(ConfigError, match="epochs='two' is not a valid int"):
        load_config(Config, path, ["epochs=two"])
    with pytest.raises(ConfigError, match="schedule"):
        load_config(Config, path, ["schedule=linear"])


def test_schedule_warms_up_then_decays() -> None:
    config = load_config(Config, None, ["model=m", "data=d", "out=o", "lr=1.0",
                                        "warmup_steps=4", "min_lr_ratio=0.1"])
    rates = [lr_at(s, 20, config) for s in range(20)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in itertools.pairwise(rates[3:]))
    assert rates[-1] >= 0.1


@pytest.mark.parametrize("lines, message", [
    ([{"prompt": "p", "completion": "c"}, {"prompt": "p"}], "line 2: missing field 'completion'"),
    ([{"completion": "c"}], "line 1: missing field 'prompt'"),
    ([{"prompt": "p", "completion": "c"}, {"prompt": "p", "completion": "  "}],
     "line 2: 'completion' is empty"),
    ([{"prompt": "p", "completion": "c", "weight": -1}], "line 1: 'weight'"),
    ([{"prompt": 3, "completion": "c"}], "line 1: 'prompt' must be text"),
])
def test_bad_sft_lines_name_the_line(tmp_path: Path, lines: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_sft(write_jsonl(tmp_path / "sft.jsonl", lines))


def _finetune(args: list[str], nproc: int | None = None, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                "-m"] if nproc else [sys.executable, "-m"]
    return subprocess.run([*launcher, "restem_client.finetune", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)


def test_help_prints_usage_and_every_key_with_its_default() -> None:
    run = _finetune(["--help"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: torchrun --nproc_per_node=N -m restem_client.finetune")
    assert "python -m restem_client.finetune [CONFIG] [key=value ...]" in run.stdout
    heading, keys = run.stdout.split("Keys and their defaults ")[1].split("\n", 1)
    assert heading == "(model, data, out must be set):"
    assert tomllib.loads(keys) == asdict(Config())  # every key, with its real default


def test_bad_input_fails_before_any_work(tmp_path: Path, tiny_model: Path) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "p", "completion": ""}])
    run = _finetune([f"model={tiny_model}", f"data={data}", f"out={tmp_path / 'o'}"])
    assert run.returncode == 2 and "line 1: 'completion' is empty" in run.stderr
    good = write_jsonl(tmp_path / "good.jsonl", RECORDS[:2])
    run = _finetune([f"model={tmp_path / 'missing'}", f"data={good}", f"out={tmp_path / 'o'}"])
    assert run.returncode == 2 and "model path does not exist" in run.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_setup_errors_fail_before_any_work(tmp_path: Path, tiny_model: Path) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", RECORDS[:2])
    args = [f"model={tiny_model}", f"data={data}", f"out={tmp_path / 'o'}"]
    run = _finetune([*args, "global_batch_size=6", "micro_batch_size=4"])
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1] == (
        "finetune: config: global_batch_size 6 is not a multiple of micro_batch_size 4 x 1 "
        "process(es) = 4")
    # A machine whose nvidia-smi lists a GPU, with this CPU build of torch: an error naming
    # the fix, not a silent run on the CPU.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    run = _finetune([*args, "global_batch_size=4", "micro_batch_size=4"], env=env)
    assert run.returncode == 2, run.stderr[-2000:]
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith(f"finetune: nvidia-smi lists 1 GPU(s) but torch {torch.__version__} "
                           "cannot use them: install a CUDA build of torch"), line
    assert "CUDA_VISIBLE_DEVICES= to train on the CPU on purpose" in line
    assert not (tmp_path / "o").exists()


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_one_or_two_processes_and_sharded_accumulation_train_alike(
        tmp_path: Path, tiny_model: Path) -> None:
    from safetensors.torch import load_file

    data = write_jsonl(tmp_path / "sft.jsonl", RECORDS)
    common = [f"model={tiny_model}", f"data={data}", "lr=3e-3", "max_steps=30",
              "global_batch_size=8", "warmup_steps=3", "seed=1"]
    runs = {  # name: (processes, accumulation, keys); the global batch is 8 in every run
        "fsdp": (2, 1, ["micro_batch_size=4"]),
        "one": (1, 2, ["micro_batch_size=4"]),  # the unwrapped module
        # FSDP's sharded gradients accumulated over 2 micro-batches, as HSDP (2 replicas of
        # 1 shard), recomputing activations
        "hsdp": (2, 2, ["micro_batch_size=2", "shard_group_size=1",
                        "activation_checkpointing=true"]),
    }
    for name, (nproc, accumulation, keys) in runs.items():
        run = _finetune([*common, *keys, f"out={tmp_path / name}"], nproc=nproc)
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads((tmp_path / name / "train_summary.json").read_text())
        assert (summary["processes"], summary["accumulation"]) == (nproc, accumulation)
    assert "HSDP 2 x 1" in run.stderr and "global batch 8 = 2 x 2 accumulation x 2" in run.stderr

    logs = {name: _log(tmp_path / name) for name in runs}
    reference = logs["fsdp"]
    assert len(reference) == 30
    first = sum(e["loss"] for e in reference[:3]) / 3
    last = sum(e["loss"] for e in reference[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    weights = {name: load_file(tmp_path / name / "model.safetensors") for name in runs}
    for name in ("one", "hsdp"):
        assert [e["tokens"] for e in logs[name]] == [e["tokens"] for e in reference]
        for a, b in zip(logs[name], reference, strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), name
        assert weights[name].keys() == weights["fsdp"].keys()
        for key, tensor in weights[name].items():
            assert torch.allclose(tensor, weights["fsdp"][key], atol=1e-4), (name, key)
    base = load_file(tiny_model / "model.safetensors")
    assert any(not torch.equal(base[k], weights["fsdp"][k]) for k in base)  # it did train


@pytest.mark.slow
def test_a_bf16_base_round_trips_exactly_and_is_saved_in_bf16(
        tmp_path: Path, tiny_model: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tmp_path / "base"
    AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).save_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.save_pretrained(base)
    data = write_jsonl(tmp_path / "sft.jsonl", RECORDS)
    lengths = [len(e["input_ids"]) for e in tokenize(RECORDS, tokenizer)]
    limit = sorted(lengths)[len(lengths) // 2]  # about half the samples are cut
    # lr=0: the weights must come back bit for bit, through the meta-device build, rank 0's
    # broadcast into fp32 shards, the gather and the save in the base's dtype.
    run = _finetune([f"model={base}", f"data={data}", f"out={tmp_path / 'out'}", "lr=0",
                     "max_steps=2", "global_batch_size=8", "micro_batch_size=4",
                     f"max_seq_len={limit}"], nproc=2)
    assert run.returncode == 0, run.stderr[-3000:]
    saved = load_file(tmp_path / "out" / "model.safetensors")
    original = load_file(base / "model.safetensors")
    assert saved.keys() == original.keys()
    for key, tensor in saved.items():
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, original[key]), key
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"

    cut = sum(n > limit for n in lengths)
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert (summary["max_seq_len"], summary["cut_samples"]) == (limit, cut)
    assert summary["saved_dtype"] == "bfloat16" and summary["sharding"] == "FSDP over 2"
    warning = (f"WARNING: {cut} of {len(RECORDS)} samples ({100 * cut / len(RECORDS):.1f} %) "
               f"are longer than max_seq_len={limit}")
    assert summary["warnings"][0].startswith(warning)
    assert run.stderr.strip().splitlines()[-1] == f"finetune: {summary['warnings'][0]}"

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.dtype == torch.bfloat16
    prompt = tokenizer(RECORDS[5]["prompt"], return_tensors="pt")
    output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > prompt["input_ids"].shape[1]
