"""`OpenAISampler`: any OpenAI-compatible server, e.g. a team's shared `vllm serve`.

Text prompts go to `/v1/completions`, chats to `/v1/chat/completions`, one request per prompt
asking for `n` choices. Requests run concurrently (at most `concurrency` in flight) on one
event loop; the openai client retries connection errors, 429 and 5xx with backoff
(`max_retries`). The API key comes from the argument or `OPENAI_API_KEY`.

`top_k` and `return_token_ids` are vLLM extensions of the API (`vllm_extensions=True`).
Against another server, turn them off: top-k sampling then fails with a clear error, and the
token count of each choice is the server's usage split evenly over the choices.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tqdm import tqdm

from evals.sampling import Completion, Prompt, SamplingParams, cut_at_stop


class OpenAISampler:
    def __init__(self, base_url: str, served_model: str | None = None,
                 api_key: str | None = None, concurrency: int = 64, max_retries: int = 5,
                 timeout_s: float = 600.0, vllm_extensions: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.vllm_extensions = vllm_extensions
        self.served_model = served_model or asyncio.run(self._first_model())

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        if params.top_k and not self.vllm_extensions:
            raise ValueError("top_k sampling needs a server with vLLM's API extensions "
                             "(vllm_extensions=True)")
        return asyncio.run(self._generate(prompts, params))

    def close(self) -> None:
        pass  # each generate() opens and closes its own connection pool

    def _client(self) -> Any:
        from openai import AsyncOpenAI

        return AsyncOpenAI(base_url=self.base_url, api_key=self.api_key,
                           max_retries=self.max_retries, timeout=self.timeout_s)

    async def _first_model(self) -> str:
        async with self._client() as client:
            models = await client.models.list()
        if not models.data:
            raise RuntimeError(f"{self.base_url} serves no model")
        return models.data[0].id

    async def _generate(self, prompts: list[Prompt], params: SamplingParams
                        ) -> list[list[Completion]]:
        gate = asyncio.Semaphore(self.concurrency)
        progress = tqdm(total=len(prompts), desc="sampling (server)", unit="prompt",
                        disable=None)
        async with self._client() as client:

            async def one(prompt: Prompt) -> list[Completion]:
                async with gate:
                    result = await self._request(client, prompt, params)
                progress.update()
                return result

            try:
                return list(await asyncio.gather(*(one(p) for p in prompts)))
            finally:
                progress.close()

    async def _request(self, client: Any, prompt: Prompt, params: SamplingParams
                       ) -> list[Completion]:
        body: dict[str, Any] = {
            "model": self.served_model, "n": params.n, "temperature": params.temperature,
            "top_p": params.top_p, "max_tokens": params.max_tokens, "seed": params.seed,
            "stop": list(params.stop) or None}
        extra = {"return_token_ids": True} if self.vllm_extensions else {}
        if params.top_k:
            extra["top_k"] = params.top_k
        if isinstance(prompt, str):
            response = await client.completions.create(prompt=prompt, extra_body=extra, **body)
            texts = [c.text for c in response.choices]
        else:
            response = await client.chat.completions.create(messages=prompt, extra_body=extra,
                                                             **body)
            texts = [c.message.content or "" for c in response.choices]
        choices = sorted(zip(response.choices, texts, strict=True), key=lambda c: c[0].index)
        share = (response.usage.completion_tokens // len(choices)) if response.usage else 0
        out = []
        for choice, text in choices:
            ids = getattr(choice, "token_ids", None) or (choice.model_extra or {}).get(
                "token_ids")
            # Servers cut at stop strings themselves; cutting again is a no-op there and
            # keeps the contract for servers that ignore `stop`.
            text, _ = cut_at_stop(text, params.stop)
            out.append(Completion(text, len(ids) if ids else share,
                                  "length" if choice.finish_reason == "length" else "stop"))
        return out
