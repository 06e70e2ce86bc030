"""Samplers: one `Sampler` protocol, three backends.

    VLLMSampler(model, tensor_parallel_size=1)      # the offline vLLM engine in this process
    OpenAISampler(base_url, model, api_key=None)   # any OpenAI-compatible server (`vllm serve`)
    HFSampler(model, batch_size=16)                # transformers `generate`, CPU or GPU

    sampler = make_sampler("hf", "/path/to/checkpoint")
    completions = sampler.generate(prompts, preset("estep", n=32, max_tokens=512))

The protocol and its value types (`SamplingParams`, `Completion`, the paper presets) live in
`evals.sampling`, so evals can be written against them without importing this package.
"""

from __future__ import annotations

from typing import Any

from evals.sampling import PRESETS, Completion, Prompt, Sampler, SamplingParams, preset

BACKENDS = ("hf", "vllm", "openai")

__all__ = ["BACKENDS", "PRESETS", "Completion", "Prompt", "Sampler", "SamplingParams",
           "make_sampler", "preset", "prompt_ids", "sampler_options"]
# The make_sampler options each backend takes.
OPTIONS = {"hf": ("batch_size",),
           "vllm": ("tensor_parallel_size", "max_model_len", "gpu_memory_utilization"),
           "openai": ("served_model",)}


def prompt_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of a prompt: text gets the tokenizer's special tokens; a chat is rendered by
    the model's chat template, which already holds them (so none are added twice)."""
    if isinstance(prompt, str):
        return tokenizer(prompt).input_ids
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False).input_ids


def sampler_options(backend: str, **settings: Any) -> dict[str, Any]:
    """The settings `backend` takes, as make_sampler options; a setting that is None, 0 or
    empty means the backend's default and is left out."""
    if backend not in OPTIONS:
        raise ValueError(f"unknown sampling backend {backend!r}; expected one of {BACKENDS}")
    return {k: v for k, v in settings.items() if k in OPTIONS[backend] and v}


def make_sampler(backend: str, model: str, **options: Any) -> Sampler:
    """A sampler by backend name; `model` is a checkpoint path (hf, vllm) or, for openai, the
    server's base URL (`options["served_model"]` names the model there, default: the first the
    server lists)."""
    if backend == "hf":
        from restem_client.sampling.hf import HFSampler

        return HFSampler(model, **options)
    if backend == "vllm":
        from restem_client.sampling.vllm_offline import VLLMSampler

        return VLLMSampler(model, **options)
    if backend == "openai":
        from restem_client.sampling.openai_server import OpenAISampler

        return OpenAISampler(model, **options)
    raise ValueError(f"unknown sampling backend {backend!r}; expected one of {BACKENDS}")
