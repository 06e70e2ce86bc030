"""`HFSampler`: transformers `generate`, batched with left padding, on CPU or GPU.

The fallback where neither vLLM nor a server is available. Each prompt is repeated `n` times
and the rows are generated `batch_size` at a time. A fixed seed seeds torch before the first
batch, so the same prompts, params and batch size give the same samples.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from evals.sampling import Completion, Prompt, SamplingParams, cut_at_stop
from restem_client.models import resolve
from restem_client.sampling import prompt_ids


class HFSampler:
    def __init__(self, model: str, batch_size: int = 16, device: str | None = None,
                 dtype: str | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = getattr(torch, dtype) if dtype else (
            torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        eos = self.model.generation_config.eos_token_id
        self.end_ids = set(eos if isinstance(eos, list) else [eos]) | {
            self.tokenizer.eos_token_id}

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        rows = [i for i in range(len(ids)) for _ in range(params.n)]
        out: list[list[Completion]] = [[] for _ in ids]
        if params.seed is not None:
            torch.manual_seed(params.seed)
        batches = range(0, len(rows), self.batch_size)
        for start in tqdm(batches, desc="sampling (hf)", unit="batch", disable=None):
            chunk = rows[start:start + self.batch_size]
            for i, completion in zip(chunk, self._batch([ids[i] for i in chunk], params),
                                     strict=True):
                out[i].append(completion)
        return out

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.no_grad()
    def _batch(self, rows: list[list[int]], params: SamplingParams) -> list[Completion]:
        inputs = self.tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(self.device)
        sampling = {"do_sample": False} if params.greedy else {
            "do_sample": True, "temperature": params.temperature, "top_k": params.top_k,
            "top_p": params.top_p}
        extra = {"stop_strings": list(params.stop), "tokenizer": self.tokenizer} \
            if params.stop else {}
        generated = self.model.generate(
            **inputs, max_new_tokens=params.max_tokens, pad_token_id=self.tokenizer.pad_token_id,
            **sampling, **extra)[:, inputs["input_ids"].shape[1]:]
        return [self._completion(row.tolist(), params) for row in generated]

    def _completion(self, ids: list[int], params: SamplingParams) -> Completion:
        # Rows that finished early are padded (pad may equal eos): the first end token ends it.
        end = next((k for k, t in enumerate(ids) if t in self.end_ids), None)
        kept = ids if end is None else ids[:end]
        text, stopped = cut_at_stop(self.tokenizer.decode(kept, skip_special_tokens=True),
                                    params.stop)
        if stopped:
            return Completion(text, len(kept), "stop")
        if end is not None:
            return Completion(text, end + 1, "stop")
        return Completion(text, len(ids), "length")
