"""The sampling contract that evals and the ReST-EM loop are written against.

`Sampler.generate(prompts, params)` returns, for each prompt, `params.n` `Completion`s (text,
generated token count, finish reason). A prompt is plain text or a chat (a list of
{"role", "content"} messages). The implementations (vLLM offline engine, OpenAI-compatible
server, transformers) live in `restem_client.sampling`; this module has no dependencies so
that evals stays a leaf. A `ShardSampler` (the loop's engine pools, restem_client.engines)
samples shards of prompts, possibly on several engines at once, and reports each shard as it
ends; `run_shards` drives either kind.

Paper presets by name (ReST-EM, arXiv 2312.06585): `estep` samples training data (top-k 40,
temperature 0.7), `greedy` is the pass@1 evaluation, `passk` the pass@K evaluation
(temperature 1.0, top-p 0.95).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

Prompt = str | list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0: no top-k truncation
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()  # the text is cut before the first stop string
    seed: int | None = 0  # same seed, same samples, where the backend allows

    def __post_init__(self) -> None:
        problems = []
        if self.n < 1:
            problems.append(f"n must be at least 1, not {self.n}")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0, not {self.temperature}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), not {self.top_k}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], not {self.top_p}")
        if self.max_tokens < 1:
            problems.append(f"max_tokens must be at least 1, not {self.max_tokens}")
        if self.temperature == 0 and self.n > 1:
            problems.append("greedy decoding (temperature 0) gives one sample; n must be 1")
        if problems:
            raise ValueError("sampling params: " + "; ".join(problems))
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


PRESETS = {
    "estep": SamplingParams(temperature=0.7, top_k=40),
    "greedy": SamplingParams(temperature=0.0),
    "passk": SamplingParams(temperature=1.0, top_p=0.95),
}


def preset(name: str, **overrides: Any) -> SamplingParams:
    """A paper preset with fields replaced, e.g. preset("estep", n=32, max_tokens=768)."""
    if name not in PRESETS:
        raise ValueError(f"unknown sampling preset {name!r}; expected one of {sorted(PRESETS)}")
    known = {f.name for f in fields(SamplingParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown sampling params {unknown}; expected some of {sorted(known)}")
    return replace(PRESETS[name], **overrides)


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int  # generated tokens, stop string included where the backend counts it
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"


class Sampler(Protocol):
    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """For each prompt, in order, `params.n` completions."""
        ...

    def close(self) -> None:
        ...


class ShardSampler(Protocol):
    def run(self, shards: dict[int, list[Prompt]], params_for: Callable[[int], SamplingParams],
            done: Callable[[int, list[list[Completion]]], None]) -> None:
        """Sample every shard with params_for(its index); done(index, completions) as each
        ends, in any order, on the caller's thread."""
        ...

    def close(self) -> None:
        ...


def run_shards(sampler: Sampler | ShardSampler, shards: dict[int, list[Prompt]],
               params_for: Callable[[int], SamplingParams],
               done: Callable[[int, list[list[Completion]]], None]) -> None:
    """The shards through a ShardSampler, or through a Sampler one at a time in order."""
    if hasattr(sampler, "run"):
        sampler.run(shards, params_for, done)
        return
    for index in sorted(shards):
        done(index, sampler.generate(shards[index], params_for(index)))


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """The text before the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
