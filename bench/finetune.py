"""Fine-tuning benchmarks: our FSDP script against a plain PyTorch loop, and the GPU check.

Compare (the default). Data: GSM8K train questions (prompt) and reference solutions
(completion), the same records for both sides. Ours: `restem_client/finetune.py` under
torchrun (1 process by default, which on CPU trains the unwrapped module; FSDP2 with more
processes or bf16; the script's own step log gives the clock). Peer: the same model, AdamW,
the same collated micro-batches, in a plain single-process loop without FSDP that computes
the model's logits at every position and a masked cross-entropy (the usual way). The first
`--warmup` steps are left out of both clocks. Reported: tokens (prompt + completion) per
second, the needed TFLOP/s (see `step_flops`), peak host memory of each side's whole process
tree (sampled every 20 ms), the ratio, and on a GPU the model FLOPs utilization (MFU).

    .venv/bin/python bench/finetune.py [--model smollm2-135m-instruct | --model llama-1b]
        [--steps 12] [--micro-batch-size 4] [--max-seq-len 512] [--nproc 1] [--rounds 3]
        [--peak-tflops 989]     # H100 / H200 SXM dense bf16
`llama-1b` is a randomly initialized Llama 3.2 1B shape with SmolLM2's vocabulary.

Check (`--check`, what bench/gpu_check.sh runs): on every visible GPU, with nothing from the
network, it builds a Llama 3.2 1B shape with random weights and a byte-level tokenizer made
in code, and runs the fine-tuning script on synthetic SFT data (265 to 1007 tokens a sample)
several times: bf16 with micro-batches of 8 (MFU, loss falling, checkpoint reloaded by
transformers in bf16, greedy generation), the same with activation checkpointing (same
losses, less GPU memory), with 4 micro-batches of 2 (same losses), with micro-batches of 16
(MFU), and fp32 for two steps. Every run is tried, whatever happened to the others, and the
check always ends with one JSON summary (also written to `--summary`): a run that failed or
ran out of the time limit (`--time-limit`, 450 s) has its error line and the steps it
logged, and every check that needs it is false. Exit 1 if a run or a check failed.
Beside each run: its median step time and restem_client.train_memory's estimate of its
GPU memory (to hold against the measured peak). Where vLLM is installed, it then samples the
bf16 checkpoint with and without per-request seeds (`sampling`: tokens/s and their ratio).
`--cpu-smoke` runs the same plan with a tiny shape in bf16 on the CPU, in one process.
`--runs a,b` runs only some of the plan; `--keys RUN:key=value` adds a key to one run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Model shapes: Llama 3.2 1B (1.24B parameters with its 128k vocabulary), and a tiny one.
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256}
# Heads of 64: vLLM's CPU attention has no kernel for 16.
TINY = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 512}
# Dense bf16 peak TFLOP/s by device name (the first key the name contains).
# The NVL (PCIe, lower clock) parts before the SXM ones their names contain.
PEAK_TFLOPS = {"H200 NVL": 835.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H200": 989.0,
               "H100": 989.0, "A100": 312.0, "L40S": 362.0}
# Words per prompt (and per completion) of the GPU check's synthetic SFT data. The byte
# tokenizer makes about 12.3 tokens of a word (about 6.2 bytes a word in the prompt and again
# in the reversed completion), plus 17. So 20 to 80 words are 265 to 1007 tokens, and a
# micro-batch of 16 pads to at most 16,112 positions. Without activation checkpointing, the
# 1B shape keeps 1.7 MiB per position for the backward pass (106 to 113 KiB per layer,
# measured in bf16). That is about 27 GiB at micro 16, on top of the 13.8 GiB of fp32
# weights and AdamW state: the footprint of micro 8 on the old data, which ran on an H100.
# The old data (40 to 160 words, 549 to 2005 tokens) put 29,648 positions in a micro-batch of
# 16: about 51 GiB of activations, out of memory at 66 GiB allocated on the first H100 check.
CHECK_WORDS = (20, 80)
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda",
         "sigma", "omega", "river", "stone", "cloud", "field", "light", "north", "south",
         "seven", "eight", "ninety", "apple", "orange", "purple", "silver")


def make_model(out: Path, shape: dict[str, int], tokenizer: Any) -> Path:
    """A randomly initialized bf16 Llama of `shape`, saved as a Hugging Face checkpoint. It
    is built on the CPU: this process never holds GPU memory that the runs, which are
    other processes, would miss (the first H100 check lost 3 GB of GPU 0 to it)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**shape, max_position_embeddings=8192, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def byte_tokenizer() -> Any:
    """A byte-level tokenizer built in code (no files, no network): one token per byte."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<s>", "</s>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(special + sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")


def synthetic_sft(path: Path, count: int, words: tuple[int, int], seed: int = 0) -> Path:
    """Learnable SFT records of varied length: a list of words, answered reversed."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        chosen = [rng.choice(WORDS) for _ in range(rng.randint(*words))]
        lines.append(json.dumps({"prompt": f"Reverse: {' '.join(chosen)}\nAnswer:",
                                 "completion": " " + " ".join(reversed(chosen))}))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_gsm8k(path: Path, count: int) -> Path:
    from evals.tasks import load

    problems = load("gsm8k", "train", REPO.parent / "shared" / "data")[:count]
    path.write_text("".join(json.dumps({"prompt": f"Q: {p.question}\nA:",
                                        "completion": " " + p.solutions[0]}) + "\n"
                            for p in problems))
    return path


def step_flops(model_dir: Path) -> tuple[int, Any]:
    """The model's parameters, and a function of a step-log entry giving the FLOPs the step
    needs: 6 x (decoder
    parameters x input tokens + output layer x completion tokens) + causal attention at
    the real lengths, 6 x layers x attention width x sum of squared lengths (forward
    2 L^2 d per layer, half of a full L x L, and backward twice that). Embedding lookups,
    padding and recomputation count nothing; the prompt positions need no logits."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings().weight.numel()
    embed = model.get_input_embeddings().weight.numel()
    tied = config.tie_word_embeddings
    decoder = sum(p.numel() for p in model.parameters()) - head - (0 if tied else embed)
    width = config.num_attention_heads * (getattr(config, "head_dim", None)
                                          or config.hidden_size // config.num_attention_heads)

    def flops(entry: dict[str, Any]) -> float:
        return 6 * (decoder * entry["input_tokens"] + head * entry["tokens"]
                    + config.num_hidden_layers * width * entry["seq_len_sq"])
    return decoder + head + (0 if tied else embed), flops


def rate(log: list[dict], warmup: int, flops: Any) -> tuple[float, float]:
    """Input tokens and needed FLOPs per second after the first `warmup` steps."""
    timed = log[warmup:]
    seconds = timed[-1]["elapsed_s"] - log[warmup - 1]["elapsed_s"]
    return (sum(e["input_tokens"] for e in timed) / seconds,
            sum(flops(e) for e in timed) / seconds)


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


# ----------------------------------------------------------------------------- compare


def tree_peak_rss(pid: int, alive: Any) -> float:
    """Peak of the summed RSS (MiB) of process `pid` and its descendants while `alive()`."""
    import psutil

    root, peak = psutil.Process(pid), 0
    while alive():
        with contextlib.suppress(psutil.Error):  # a process ended while being read
            peak = max(peak, sum(p.memory_info().rss
                                 for p in [root, *root.children(recursive=True)]))
        time.sleep(0.02)
    return peak / 2**20


def run_ours(model: Path, data: Path, out: Path, args: argparse.Namespace
             ) -> tuple[list[dict], float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
           "-m", "restem_client.finetune", f"model={model}", f"data={data}", f"out={out}",
           f"max_steps={args.steps}", f"micro_batch_size={args.micro_batch_size}",
           f"global_batch_size={args.micro_batch_size * args.nproc}",
           f"max_seq_len={args.max_seq_len}", "lr=1e-5", "schedule=constant"]
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    peak = tree_peak_rss(process.pid, lambda: process.poll() is None)
    if process.returncode:
        raise RuntimeError(f"finetune failed: {process.stderr.read()[-2000:]}")
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()], peak


def run_peer(model_dir: Path, data: Path, args: argparse.Namespace, out: Path
             ) -> tuple[list[dict], float]:
    """The plain loop in a child process of its own, so that its memory is measured alike."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(
        target=peer_loop, args=(model_dir, data, args.steps, args.micro_batch_size,
                                args.max_seq_len, out))
    child.start()
    peak = tree_peak_rss(child.pid, child.is_alive)
    child.join()
    if child.exitcode:
        raise RuntimeError(f"the plain loop failed (exit {child.exitcode})")
    return json.loads(out.read_text()), peak


def peer_loop(model_dir: Path, data: Path, steps: int, micro: int, max_seq_len: int,
              out: Path) -> None:
    """The same steps as a plain loop (1 process, no FSDP, logits at every position)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from restem_client.train_data import (
        IGNORE,
        collate,
        epoch_batches,
        loss_tokens,
        read_sft,
        tokenize,
        truncate,
    )

    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples, _ = truncate(tokenize(read_sft(data), tokenizer), max_seq_len)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95),
                                  fused=on_gpu or None)
    batches = epoch_batches([len(e["input_ids"]) for e in examples], micro, 0, 0)
    log, started = [], time.perf_counter()
    for step in range(steps):
        batch = [examples[i] for i in batches[step]]
        inputs = {k: v.to(device) for k, v in collate(batch, tokenizer.pad_token_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
            logits = model(input_ids=inputs["input_ids"],
                           attention_mask=inputs["attention_mask"]).logits
        per_token = F.cross_entropy(logits[:, :-1].float().transpose(1, 2),
                                    inputs["labels"][:, 1:], ignore_index=IGNORE,
                                    reduction="none")
        tokens = sum(loss_tokens(e) for e in batch)
        loss = (per_token.sum(dim=1) * inputs["weights"]).sum() / max(1, tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        log.append({"step": step + 1, "loss": loss.item(), "tokens": tokens,
                    "input_tokens": sum(len(e["input_ids"]) for e in batch),
                    "seq_len_sq": sum(len(e["input_ids"]) ** 2 for e in batch),
                    "elapsed_s": time.perf_counter() - started})
    out.write_text(json.dumps(log))


def compare(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoTokenizer

    from restem_client.models import resolve

    with tempfile.TemporaryDirectory() as tmp:
        base = resolve("smollm2-135m-instruct")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = (make_model(Path(tmp, "llama-1b"),
                            {**LLAMA_1B, "vocab_size": len(AutoTokenizer.from_pretrained(base))},
                            AutoTokenizer.from_pretrained(base))
                 if args.model == "llama-1b" else resolve(args.model))
        data = write_gsm8k(Path(tmp, "sft.jsonl"), args.steps * args.micro_batch_size * args.nproc)
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        print(f"# {platform.node()}: {os.cpu_count()} cores, {name}, model={args.model}, "
              f"steps={args.steps} (first {args.warmup} not timed), micro batch "
              f"{args.micro_batch_size}, processes={args.nproc}, rounds={args.rounds}")
        params, flops = step_flops(model)
        print(f"# {params / 1e6:.0f}M parameters")
        ours, peer = [], []
        for round_ in range(args.rounds):
            log, memory = run_ours(model, data, Path(tmp, f"out{round_}"), args)
            ours.append((*rate(log, args.warmup, flops), memory))
            log, memory = run_peer(model, data, args, Path(tmp, f"peer{round_}.json"))
            peer.append((*rate(log, args.warmup, flops), memory))
        rows = [(name, [statistics.median(r[i] for r in runs) for i in range(3)])
                for name, runs in (("plain PyTorch loop", peer),
                                   (f"restem finetune ({args.nproc} proc)", ours))]
        print("\n| trainer | tokens/s | TFLOP/s | peak host MiB | tokens/s ratio |\n"
              "| --- | ---: | ---: | ---: | ---: |")
        for label, (tokens, flop_rate, memory) in rows:
            print(f"| {label} | {tokens:.0f} | {flop_rate / 1e12:.3f} | {memory:.0f} | "
                  f"{tokens / rows[0][1][0]:.2f} |")
        if device == "cuda":
            peak = (args.peak_tflops or peak_tflops(name) or float("nan")) * 1e12 * args.nproc
            print(f"\nMFU (ours): {100 * rows[1][1][1] / peak:.1f}%")
    return 0


# ----------------------------------------------------------------------------- check


def run_finetune(model: Path, data: Path, out: Path, nproc: int, keys: list[str],
                 timeout: float | None = None) -> dict[str, Any]:
    """One run of the script: its step log, its summary and its wall time. A run that fails
    or passes `timeout` seconds also has `error`, the one line that says why, and keeps the
    steps it logged; its summary is None."""
    import signal

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "-m",
           "restem_client.finetune", f"model={model}", f"data={data}", f"out={out}", *keys]
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    error = None
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # torchrun ends its workers on SIGTERM (they run in sessions of their own).
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        error = f"stopped after {timeout:.0f} s, the time left to the check"
    if error is None and process.returncode:
        error = error_line(stderr) or f"exit status {process.returncode}"
    log_path, summary_path = out / "train_log.jsonl", out / "train_summary.json"
    log = ([json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
           if log_path.exists() else [])
    summary = None
    if error is None:
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError) as exc:
            error = f"no train_summary.json: {exc}"
    result = {"log": log, "summary": summary,
              "wall_s": round(time.perf_counter() - started, 1)}
    return {**result, "error": error} if error else result


# The line of a traceback that names the exception: `torch.OutOfMemoryError: CUDA out of ...`
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt)\b(?::.*)?$")
# What torchrun says about a failed worker, which names no cause.
LAUNCHER_ERRORS = ("ChildFailedError",)


def error_line(stderr: str, limit: int = 600) -> str | None:
    """The one line of a failed run's stderr that says why: the last exception line of a
    traceback (a worker's `[rankN]: ` prefix removed, torchrun's own error skipped), else the
    script's last `finetune: ` line (its errors), else the last line."""
    lines = [re.sub(r"^\[(?:default)?rank\d+\]:\s?", "", x).strip()
             for x in stderr.splitlines()]
    lines = [x for x in lines if x]
    found = (next((x for x in reversed(lines) if EXCEPTION_LINE.match(x)
                   and not any(name in x.split(":")[0] for name in LAUNCHER_ERRORS)), None)
             or next((x for x in reversed(lines) if x.startswith("finetune: ")), None)
             or (lines[-1] if lines else None))
    return found if found is None or len(found) <= limit else found[:limit - 3] + "..."


VLLM_MIN_S = 120.0  # the least time left worth starting the vLLM part in
VLLM_PREFIX = re.compile(r"^\(\w+ pid=\d+\) (?:ERROR|WARNING|INFO) \S+ \S+ \[[^\]]*\] ")


def sampling_rates(model: Path) -> dict[str, Any]:
    """vLLM on a checkpoint: generated tokens/s for 64 prompts x 8 samples of 64 tokens, with
    per-request seeds (restem's `reproducible_sampling = true`) and without, interleaved
    three times each; medians and their ratio. Runs in a process of its own (`--sampling`)."""
    from evals.sampling import preset
    from restem_client.sampling.vllm_offline import VLLMSampler

    sampler = VLLMSampler(str(model), max_model_len=1024)
    rng = random.Random(0)
    prompts = [f"Reverse: {' '.join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))}"
               "\nAnswer:" for _ in range(64)]
    rates: dict[str, list[float]] = {"seeded": [], "unseeded": []}
    try:
        sampler.generate(prompts[:4], preset("estep", n=2, max_tokens=8, seed=0))  # warm-up
        for _ in range(3):
            for label, seed in (("seeded", 0), ("unseeded", None)):
                started = time.perf_counter()
                out = sampler.generate(prompts, preset("estep", n=8, max_tokens=64, seed=seed))
                tokens = sum(c.tokens for completions in out for c in completions)
                rates[label].append(tokens / (time.perf_counter() - started))
    finally:
        sampler.close()
    seeded, unseeded = (statistics.median(rates[k]) for k in ("seeded", "unseeded"))
    return {"seeded_tokens_per_s": round(seeded), "unseeded_tokens_per_s": round(unseeded),
            "unseeded_over_seeded": round(unseeded / seeded, 3)}


def sampling_part(model: Path, timeout: float) -> dict[str, Any]:
    """`sampling_rates` in a child process, or why it did not run."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vLLM is not installed"}
    if timeout < VLLM_MIN_S:
        return {"skipped": "the check's time limit was spent"}
    try:
        done = subprocess.run([sys.executable, __file__, "--sampling", str(model)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"not done in {timeout:.0f} s"}
    if done.returncode:
        # vLLM's processes log the root cause first, under prefixes, and the driver's
        # EngineDeadError last.
        lines = [VLLM_PREFIX.sub("", x).strip() for x in done.stderr.splitlines()]
        cause = next((x for x in lines if EXCEPTION_LINE.match(x)), None)
        return {"error": cause or error_line(done.stderr) or f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_relative_gap(a: list[dict], b: list[dict]) -> float:
    return max(abs(x["loss"] - y["loss"]) / abs(y["loss"]) for x, y in zip(a, b, strict=True))


def reload_and_generate(out: Path, device: str) -> dict[str, Any]:
    """The saved checkpoint as transformers loads it: its dtype, and a greedy generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out).to(device)
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = tokenizer("Reverse: alpha beta gamma\nAnswer:", return_tensors="pt").to(device)
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=16, do_sample=False)
    return {"dtype": str(model.dtype).removeprefix("torch."),
            "new_tokens": output.shape[1] - prompt["input_ids"].shape[1]}


# Seconds kept back from the check's time limit for the reload and the summary, and the
# least time worth starting a run in.
RESERVE_S, MIN_RUN_S = 30.0, 20.0


def check_plan(nproc: int) -> dict[str, list[str]]:
    """The check's runs: name -> keys; the first four in bf16 (the GPU default)."""
    return {
        "bf16_micro8": ["micro_batch_size=8", f"global_batch_size={8 * nproc}"],
        "activation_checkpointing": ["micro_batch_size=8", f"global_batch_size={8 * nproc}",
                                     "activation_checkpointing=true"],
        "accumulation_4x2": ["micro_batch_size=2", f"global_batch_size={8 * nproc}"],
        "bf16_micro16": ["micro_batch_size=16", f"global_batch_size={16 * nproc}"],
        "fp32": ["micro_batch_size=2", f"global_batch_size={2 * nproc}", "max_steps=2",
                 "mixed_precision=fp32"],
    }


def check(args: argparse.Namespace) -> int:
    """The GPU check. It always ends with its JSON summary (printed, and written to
    --summary): a run that fails is recorded with its error and the steps it logged, the
    other runs still run, and every check that needs a failed run is false."""
    import torch

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} sees no CUDA GPU; on a CPU machine run "
              "bench/gpu_check.sh --cpu-smoke", file=sys.stderr)
        return 2
    started = time.perf_counter()
    nproc = 1 if smoke else torch.cuda.device_count()
    name = "cpu" if smoke else torch.cuda.get_device_name()
    summary: dict[str, Any] = {
        "device": name, "processes": nproc, "mode": "cpu-smoke" if smoke else "gpu",
        "peak_tflops_per_device": args.peak_tflops or (None if smoke else peak_tflops(name))}
    try:
        plan = check_plan(nproc)
        for item in args.keys:
            label, _, key = item.partition(":")
            if label not in plan or "=" not in key:
                raise ValueError(f"--keys {item!r}: want RUN:key=value, RUN one of "
                                 f"{', '.join(plan)}")
            plan[label].append(key)
        chosen = args.runs.split(",") if args.runs else list(plan)
        if unknown := [label for label in chosen if label not in plan]:
            raise ValueError(f"--runs: no run {unknown[0]!r} (runs: {', '.join(plan)})")
        _check(args, {label: plan[label] for label in chosen}, summary,
               started + args.time_limit)
    except Exception as exc:  # whatever broke, the summary says what and comes out
        summary.update(error=f"{type(exc).__name__}: {exc}", ok=False)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.summary:
        Path(args.summary).write_text(text + "\n")
    return 0 if summary["ok"] else 1


def _check(args: argparse.Namespace, plan: dict[str, list[str]], summary: dict[str, Any],
           deadline: float) -> None:
    """Run `plan` and fill `summary` with the runs' figures, the checks and `ok`."""
    from restem_client.train_memory import GiB, Shape, estimate

    smoke, nproc = args.cpu_smoke, summary["processes"]
    device, peak = "cpu" if smoke else "cuda", summary["peak_tflops_per_device"]
    steps = 4 if smoke else args.steps
    runs: dict[str, dict[str, Any]] = {}
    reload: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp, "base"), TINY if smoke else LLAMA_1B, byte_tokenizer())
        shape = Shape.of_checkpoint(model)
        data = synthetic_sft(Path(tmp, "sft.jsonl"), steps * 16 * nproc,
                             (3, 12) if smoke else CHECK_WORDS)
        params, flops = step_flops(model)
        summary["model"] = {"shape": "tiny" if smoke else "llama-3.2-1b", "parameters": params}
        common = [f"max_steps={steps}", "lr=3e-4", "warmup_steps=2", "schedule=constant",
                  *(["mixed_precision=bf16"] if smoke else [])]
        for label, keys in plan.items():
            left = deadline - time.perf_counter() - RESERVE_S
            if left < MIN_RUN_S:
                runs[label] = {"log": [], "summary": None, "wall_s": 0.0,
                               "error": "not run: the check's time limit was spent"}
            else:
                runs[label] = run_finetune(model, data, Path(tmp, label), nproc,
                                           [*common, *keys], timeout=left)
            outcome = runs[label].get("error") or f"done in {runs[label]['wall_s']} s"
            print(f"gpu_check: {label} {outcome}", file=sys.stderr)
        if "bf16_micro8" in runs and "error" not in runs["bf16_micro8"]:
            try:
                reload = reload_and_generate(Path(tmp, "bf16_micro8"), device)
            except Exception as exc:  # recorded; the checks on it fail
                reload = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}"}
            summary["sampling"] = sampling_part(Path(tmp, "bf16_micro8"),
                                                deadline - time.perf_counter() - RESERVE_S)

    def figures(label: str) -> dict[str, Any]:
        run = runs[label]
        log, result = run["log"], run["summary"] or {}
        tokens, flop_rate = rate(log, 1, flops) if len(log) > 1 else (None, None)
        return {**({"error": run["error"]} if "error" in run else {}),
                "tokens_per_s": tokens and round(tokens),
                "tflops_per_s": flop_rate and round(flop_rate / 1e12, 2),
                "mfu": (round(flop_rate / (peak * 1e12 * nproc), 3)
                        if flop_rate and peak else None),
                "losses": [round(e["loss"], 4) for e in log],
                "step_s_median": (round(statistics.median(
                    b["elapsed_s"] - a["elapsed_s"] for a, b in itertools.pairwise(log)), 3)
                    if len(log) > 2 else None),
                "peak_gpu_gib": result.get("peak_gpu_gib"),
                "estimated_gpu_gib": estimated_gib(label, result.get("max_seq_len")),
                "peak_host_gib": result.get("peak_host_gib"),
                "precision": result.get("precision"),
                "accumulation": result.get("accumulation"), "wall_s": run["wall_s"]}

    def estimated_gib(label: str, seq_len: int | None) -> float | None:
        """restem_client.train_memory's estimate for the run, beside its measured peak."""
        if not seq_len:
            return None
        keys = dict(key.split("=", 1) for key in [*common, *plan[label]])
        need = estimate(shape, processes=nproc, shard_group_size=0,
                        micro_batch_size=int(keys["micro_batch_size"]), seq_len=seq_len,
                        activation_checkpointing=keys.get("activation_checkpointing") == "true",
                        fp32=keys.get("mixed_precision") == "fp32")
        return round(need.total / GiB, 4)

    def passed(labels: tuple[str, ...], test: Any) -> bool | None:
        """False where a run the check needs failed (a check passes only on the figures of
        runs that finished), else None where one is not in this plan (--runs)."""
        if any("error" in runs.get(label, {}) for label in labels):
            return False
        if any(label not in runs for label in labels):
            return None
        return bool(test())

    def log(label: str) -> list[dict[str, Any]]:
        return runs[label]["log"]

    def gap(label: str) -> float:
        return max_relative_gap(log(label), log("bf16_micro8"))

    def peak_gpu(label: str) -> float:
        return max(runs[label]["summary"]["peak_gpu_gib"])

    reloaded = reload if reload and "error" not in reload else None
    checks = {
        "loss_decreases": passed(("bf16_micro8",), lambda: len(log("bf16_micro8")) > 1
                                 and log("bf16_micro8")[-1]["loss"]
                                 < log("bf16_micro8")[0]["loss"]),
        "activation_checkpointing_same_losses": passed(
            ("activation_checkpointing", "bf16_micro8"),
            lambda: gap("activation_checkpointing") < 0.02),
        "activation_checkpointing_less_memory": None if smoke else passed(
            ("activation_checkpointing", "bf16_micro8"),
            lambda: peak_gpu("activation_checkpointing") < peak_gpu("bf16_micro8")),
        "accumulation_same_losses": passed(("accumulation_4x2", "bf16_micro8"),
                                           lambda: gap("accumulation_4x2") < 0.02),
        "saved_in_base_dtype": passed(
            ("bf16_micro8",), lambda: reloaded is not None
            and runs["bf16_micro8"]["summary"]["saved_dtype"] == "bfloat16"
            and reloaded["dtype"] == "bfloat16"),
        "reload_generates": passed(("bf16_micro8",), lambda: reloaded is not None
                                   and reloaded["new_tokens"] > 0),
        "fp32_trains": passed(("fp32",), lambda: bool(log("fp32"))  # and no loss is NaN
                              and all(e["loss"] == e["loss"] for e in log("fp32"))),
    }
    failed = [label for label, run in runs.items() if "error" in run]
    summary.update(
        runs={label: figures(label) for label in runs}, failed=failed,
        loss_gaps={label: round(gap(label), 5) if passed((label, "bf16_micro8"), lambda: True)
                   else None for label in ("activation_checkpointing", "accumulation_4x2")
                   if label in runs},
        reload=reload, checks=checks,
        ok=not failed and all(v is not False for v in checks.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="dense bf16 peak per GPU (default: by device name)")
    parser.add_argument("--check", action="store_true", help="run the GPU check")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="with --check: a tiny model on the CPU")
    parser.add_argument("--summary", help="with --check: also write the JSON summary here")
    parser.add_argument("--runs", help="with --check: only these runs (comma-separated names)")
    parser.add_argument("--keys", action="append", default=[], metavar="RUN:KEY=VALUE",
                        help="with --check: one more finetune key for one run (repeatable)")
    parser.add_argument("--time-limit", type=float, default=450.0,
                        help="with --check: seconds for the whole check; a run still going "
                        "when they are spent is stopped and recorded as failed")
    parser.add_argument("--sampling", metavar="MODEL", help=argparse.SUPPRESS)  # the check's
    args = parser.parse_args()
    if args.sampling:
        print(json.dumps(sampling_rates(Path(args.sampling))))
        return 0
    return check(args) if args.check else compare(args)


if __name__ == "__main__":
    sys.exit(main())
