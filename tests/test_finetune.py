"""The FSDP fine-tuning script: masking, the loss, config and input errors, and real torchrun
runs on CPU (2 processes against 1) with a checkpoint that reloads and generates."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from restem_client.finetune import (
    IGNORE,
    Config,
    ConfigError,
    collate,
    load_config,
    lr_at,
    read_sft,
    tokenize,
    weighted_loss_sum,
)
from tests.conftest import REPO, write_jsonl

RECORDS = [{"prompt": f"Q: {a} + {b} = ?\nA:", "completion": f" {a + b}. The answer is {a + b}."}
           for a in range(8) for b in range(4)]


@pytest.fixture(scope="module")
def tokenizer(smollm2: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


def test_prompt_positions_are_masked_in_the_labels(tokenizer) -> None:
    example = tokenize(RECORDS[:1], tokenizer, 512)[0]
    prompt_len = len(tokenizer(RECORDS[0]["prompt"]).input_ids)
    assert example["labels"][:prompt_len] == [IGNORE] * prompt_len
    assert example["labels"][prompt_len:] == example["input_ids"][prompt_len:]
    assert example["labels"][-1] == tokenizer.eos_token_id  # the model learns to stop


def test_prompt_positions_get_no_gradient(tokenizer, tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    examples = tokenize(RECORDS[:3], tokenizer, 512)
    batch = collate(examples, tokenizer.pad_token_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits.retain_grad()
    weighted_loss_sum(logits, batch["labels"], batch["weights"]).backward()
    per_position = logits.grad.abs().sum(dim=-1)  # position t predicts token t + 1
    for row, example in enumerate(examples):
        prompt_len = example["labels"].index(next(x for x in example["labels"] if x != IGNORE))
        length = len(example["input_ids"])
        assert torch.all(per_position[row, :prompt_len - 1] == 0)
        assert torch.all(per_position[row, prompt_len - 1:length - 1] > 0)
        assert torch.all(per_position[row, length - 1:] == 0)  # last token and padding


def test_weight_scales_each_samples_loss(tokenizer, tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    batch = collate(tokenize(RECORDS[:2], tokenizer, 512), tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ones = weighted_loss_sum(logits, batch["labels"], torch.tensor([1.0, 1.0]))
    first = weighted_loss_sum(logits, batch["labels"], torch.tensor([1.0, 0.0]))
    second = weighted_loss_sum(logits, batch["labels"], torch.tensor([0.0, 3.0]))
    assert torch.allclose(ones, first + second / 3, rtol=1e-5)


def test_config_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('model = "m"\ndata = "d"\nout = "o"\nlr = 0.001\n')
    config = load_config(str(path), ["lr=2e-5", "activation_checkpointing=true", "epochs=3"])
    assert (config.lr, config.activation_checkpointing, config.epochs) == (2e-5, True, 3)
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        load_config(str(path), ["learning_rate=1"])
    with pytest.raises(ConfigError, match="epochs='two' is not a valid int"):
        load_config(str(path), ["epochs=two"])
    with pytest.raises(ConfigError, match="schedule"):
        load_config(str(path), ["schedule=linear"])


def test_schedule_warms_up_then_decays() -> None:
    config = load_config(None, ["model=m", "data=d", "out=o", "lr=1.0", "warmup_steps=4",
                                "min_lr_ratio=0.1"])
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


def _finetune(args: list[str], nproc: int | None = None) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                "-m"] if nproc else [sys.executable, "-m"]
    return subprocess.run([*launcher, "restem_client.finetune", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


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


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_and_the_checkpoint_generates(
        tmp_path: Path, tiny_model: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_jsonl(tmp_path / "sft.jsonl", RECORDS)
    common = [f"model={tiny_model}", f"data={data}", "lr=3e-3", "max_steps=30",
              "micro_batch_size=4", "warmup_steps=3", "seed=1"]
    two = _finetune([*common, f"out={tmp_path / 'two'}", "grad_accum=1"], nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _finetune([*common, f"out={tmp_path / 'one'}", "grad_accum=2"], nproc=1)
    assert one.returncode == 0, one.stderr[-3000:]

    log_two, log_one = _log(tmp_path / "two"), _log(tmp_path / "one")
    assert len(log_two) == len(log_one) == 30
    assert all(a["tokens"] == b["tokens"] for a, b in zip(log_one, log_two, strict=True))
    first = sum(e["loss"] for e in log_two[:3]) / 3
    last = sum(e["loss"] for e in log_two[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    for a, b in zip(log_one, log_two, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    weights_one = load_file(tmp_path / "one" / "model.safetensors")
    weights_two = load_file(tmp_path / "two" / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, tensor in weights_one.items():
        assert torch.allclose(tensor, weights_two[name], atol=1e-4), name
    base = load_file(tiny_model / "model.safetensors")
    assert any(not torch.equal(base[k], weights_two[k]) for k in base)  # it did train

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "two")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "two")
    prompt = tokenizer(RECORDS[5]["prompt"], return_tensors="pt")
    output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > prompt["input_ids"].shape[1]
