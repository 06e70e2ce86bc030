"""Runs the offline vLLM sampler in its own process (vLLM starts workers, so the engine is
created under __main__) and prints what the tests check, as JSON on the last stdout line.

    python tests/vllm_job.py MODEL_DIR
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from restem_client.sampling import make_sampler, preset

PROMPTS = ["Q: What is 2 + 3?\nA:", "The capital of France is",
           "Write a short poem about the sea.\n"]
CHAT = [{"role": "user", "content": "What is 2 + 3? Answer with a number."}]


def sampler_report(sampler) -> dict:
    """What the tests check of any sampler: n and seeds, a chat, a stop string, a length cut."""
    def run(prompts, params):
        return [[asdict(c) for c in cs] for cs in sampler.generate(prompts, params)]

    params = preset("estep", n=3, max_tokens=24, seed=5)
    return {
        "estep": run(PROMPTS, params),
        "estep_again": run(PROMPTS, params),
        "estep_other_seed": run(PROMPTS, preset("estep", n=3, max_tokens=24, seed=6)),
        "greedy_chat": run([CHAT], preset("greedy", max_tokens=20)),
        "stop": run(["Count: 1, 2, 3,"], preset("greedy", max_tokens=40, stop=(",",))),
        "length": run(PROMPTS[2:], preset("greedy", max_tokens=3)),
    }


def main(model: str) -> dict:
    sampler = make_sampler("vllm", model, max_model_len=1024)
    try:
        return sampler_report(sampler)
    finally:
        sampler.close()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
