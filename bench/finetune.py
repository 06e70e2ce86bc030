"""Fine-tuning throughput: our FSDP script against a plain PyTorch loop on the same batches.

Data: GSM8K train questions (prompt) and reference solutions (completion), the same records
for both sides. Ours: `restem_client/finetune.py` under torchrun (1 process by default, which
on CPU trains the unwrapped module; FSDP2 with more processes or bf16; the script's own step
log gives the clock). Peer: the same model, AdamW, the same collated
micro-batches and masked loss, in a plain single-process loop without FSDP. The first
`--warmup` steps are left out of both clocks. Reported: tokens (prompt + completion) per
second, the ratio, and on a GPU the model FLOPs utilization, MFU = 6 * parameters * tokens/s
(+ attention) / peak.

    .venv/bin/python bench/finetune.py [--model smollm2-135m-instruct | --model llama-1b]
        [--steps 12] [--micro-batch-size 4] [--max-seq-len 512] [--nproc 1]
        [--peak-tflops 989]     # H100 SXM dense bf16
`llama-1b` is a randomly initialized ~1B Llama config (hidden 2048, 16 layers, SmolLM2's
vocabulary), for the GPU MFU figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_llama_1b(out: Path, tokenizer_from: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_data(path: Path, count: int) -> Path:
    from evals.tasks import load

    problems = load("gsm8k", "train", REPO.parent / "shared" / "data")[:count]
    path.write_text("".join(json.dumps({"prompt": f"Q: {p.question}\nA:",
                                        "completion": " " + p.solutions[0]}) + "\n"
                            for p in problems))
    return path


def flops_per_token(model_dir: Path, seq_len: float) -> tuple[int, float]:
    """Parameters, and training FLOPs per token: 6N plus attention (12 * layers * width * T)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    return params, 6 * params + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def run_ours(model: Path, data: Path, out: Path, args) -> list[dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
           "-m", "restem_client.finetune", f"model={model}", f"data={data}", f"out={out}",
           f"max_steps={args.steps}", f"micro_batch_size={args.micro_batch_size}",
           f"max_seq_len={args.max_seq_len}", "lr=1e-5", "schedule=constant"]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


def run_peer(model_dir: Path, data: Path, args) -> list[dict]:
    """The same steps as a plain loop (1 process, no FSDP)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from restem_client.finetune import (
        collate,
        epoch_order,
        loss_tokens,
        read_sft,
        tokenize,
        weighted_loss_sum,
    )

    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = tokenize(read_sft(data), tokenizer, args.max_seq_len)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95),
                                  fused=on_gpu or None)
    global_batch = args.micro_batch_size
    order = epoch_order(len(examples), global_batch, 0, 0)
    log, started = [], time.perf_counter()
    for step in range(args.steps):
        batch = [examples[i] for i in order[step * global_batch:(step + 1) * global_batch]]
        inputs = collate(batch, tokenizer.pad_token_id)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
            logits = model(input_ids=inputs["input_ids"].to(device),
                           attention_mask=inputs["attention_mask"].to(device)).logits
        loss = weighted_loss_sum(logits, inputs["labels"].to(device), inputs["weights"]) / max(
            1, sum(loss_tokens(e) for e in batch))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        log.append({"step": step + 1, "loss": loss_value,
                    "input_tokens": sum(len(e["input_ids"]) for e in batch),
                    "elapsed_s": time.perf_counter() - started})
    return log


def rate(log: list[dict], warmup: int) -> tuple[float, float]:
    """Tokens per second after the warm-up steps, and the mean sequence length."""
    timed = log[warmup:]
    seconds = timed[-1]["elapsed_s"] - log[warmup - 1]["elapsed_s"]
    tokens = sum(e["input_tokens"] for e in timed)
    return tokens / seconds, tokens / len(timed)


def main() -> None:
    from restem_client.models import resolve

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        base = resolve("smollm2-135m-instruct")
        model = make_llama_1b(Path(tmp, "llama-1b"), base) if args.model == "llama-1b" \
            else resolve(args.model)
        data = write_data(Path(tmp, "sft.jsonl"), args.steps * args.micro_batch_size * args.nproc)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        print(f"# {platform.node()}: {os.cpu_count()} cores, {device}, model={args.model}, "
              f"steps={args.steps} (first {args.warmup} not timed), micro batch "
              f"{args.micro_batch_size}, processes={args.nproc}, rounds={args.rounds}")
        ours, peer = [], []
        for round_ in range(args.rounds):
            ours.append(rate(run_ours(model, data, Path(tmp, f"out{round_}"), args),
                             args.warmup))
            peer.append(rate(run_peer(model, data, args), args.warmup))
        our_rate = statistics.median(r for r, _ in ours)
        peer_rate = statistics.median(r for r, _ in peer)
        params, per_token = flops_per_token(model, statistics.median(t for _, t in ours))
        print(f"\nparameters: {params / 1e6:.0f}M, FLOPs per token: {per_token / 1e9:.2f} G")
        print("\n| trainer | tokens/s | TFLOP/s | ratio |\n| --- | ---: | ---: | ---: |")
        for name, value in (("plain PyTorch loop", peer_rate),
                            (f"restem finetune ({args.nproc} proc)", our_rate)):
            print(f"| {name} | {value:.0f} | {value * per_token / 1e12:.2f} | "
                  f"{value / peer_rate:.2f} |")
        if torch.cuda.is_available():
            peak = args.peak_tflops * 1e12 * args.nproc
            print(f"\nMFU (ours): {100 * our_rate * per_token / peak:.1f}% of "
                  f"{args.peak_tflops:.0f} TFLOP/s per GPU x {args.nproc}")


if __name__ == "__main__":
    main()
