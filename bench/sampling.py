"""Sampling throughput of each backend on the same prompts, and our wrapper's overhead.

Prompts: the first P GSM8K test questions as chats (the model's template), `estep` preset
(top-k 40, temperature 0.7), n samples each, max_tokens M, the same seed everywhere.
Measured, in rounds that alternate (medians reported):
- HFSampler (transformers generate, batched with left padding);
- VLLMSampler.generate, and the same engine called directly (`llm.generate` with the same
  prompt token ids and vLLM SamplingParams): the ratio is our wrapper's overhead;
- OpenAISampler against a running server, when --server URL is given.
Generated tokens per second count every completion's tokens.

    .venv/bin/python bench/sampling.py [--model smollm2-135m-instruct] [--prompts 32] [-n 4]
        [--max-tokens 128] [--rounds 3] [--backends hf,vllm] [--server URL]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def timed(fn) -> tuple[float, int]:
    started = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - started, tokens


def main() -> None:
    from evals.tasks import load
    from restem_client.models import resolve
    from restem_client.sampling import make_sampler, preset, prompt_ids

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("-n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="hf,vllm")
    parser.add_argument("--server", help="an OpenAI-compatible server serving the same model")
    parser.add_argument("--hf-batch-size", type=int, default=64)
    args = parser.parse_args()
    model = str(resolve(args.model))
    questions = load("gsm8k", "test", REPO.parent / "shared" / "data")[: args.prompts]
    prompts = [[{"role": "user", "content": q.question}] for q in questions]
    params = preset("estep", n=args.n, max_tokens=args.max_tokens, seed=0)
    backends = args.backends.split(",")
    print(f"# {platform.node()}: {os.cpu_count()} cores, {platform.python_version()}, "
          f"model={Path(model).name}, {len(prompts)} prompts x n={args.n}, "
          f"max_tokens={args.max_tokens}, rounds={args.rounds}")

    runs: dict[str, list[tuple[float, int]]] = {}

    def count(outputs) -> int:
        return sum(c.tokens for cs in outputs for c in cs)

    samplers = {}
    if "hf" in backends:
        samplers["hf"] = make_sampler("hf", model, batch_size=args.hf_batch_size)
    if "vllm" in backends:
        samplers["vllm"] = make_sampler("vllm", model, max_model_len=2048)
    if args.server:
        samplers["openai"] = make_sampler("openai", args.server)
    for _ in range(args.rounds):
        for name, sampler in samplers.items():
            runs.setdefault(name, []).append(
                timed(lambda s=sampler: count(s.generate(prompts, params))))
            if name == "vllm":
                from vllm import SamplingParams as VLLMParams

                llm = sampler.llm
                direct = VLLMParams(n=params.n, temperature=params.temperature,
                                    top_k=params.top_k, top_p=params.top_p,
                                    max_tokens=params.max_tokens, seed=params.seed)
                requests = [{"prompt_token_ids": prompt_ids(llm.get_tokenizer(), p)}
                            for p in prompts]
                runs.setdefault("vllm direct", []).append(timed(
                    lambda llm=llm, requests=requests, direct=direct: sum(
                        len(c.token_ids)
                        for o in llm.generate(requests, direct, use_tqdm=False)
                        for c in o.outputs)))

    print("\n| backend | median s | generated tokens | tokens/s |\n| --- | ---: | ---: | ---: |")
    rates = {}
    for name, results in runs.items():
        seconds = statistics.median(t for t, _ in results)
        tokens = statistics.median(n for _, n in results)
        rates[name] = tokens / seconds
        print(f"| {name} | {seconds:.2f} | {tokens:.0f} | {rates[name]:.1f} |")
    if "vllm" in rates and "hf" in rates:
        print(f"\nvLLM / HF tokens/s: {rates['vllm'] / rates['hf']:.2f}x")
    if "vllm direct" in rates:
        overhead = rates["vllm direct"] / rates["vllm"] - 1
        print(f"VLLMSampler overhead against the engine called directly: {100 * overhead:+.1f}%")
    for sampler in samplers.values():
        sampler.close()


if __name__ == "__main__":
    main()
