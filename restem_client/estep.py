"""The E-step as shards: sampled by one engine or many, each shard written to the run
directory and verified as soon as it is sampled, and resumed at the first unfinished shard.

Problems are cut into shards of `shard_size` in dataset order, and shard k is sampled with
seed `params.seed + k` whichever engine samples it. So a run gives the same samples with 1
or N replicas (same backend, batch size and hardware); vLLM also seeds each request.

Files in the step's directory:
    shards/00007.samples.jsonl   shard 7's samples, written at once when it is sampled
    shards/00007.results.jsonl   their verdicts, written when the verifier is done with them
    samples.jsonl, samples_results.jsonl, samples_results.summary.json, results.json
                                 every shard in order, once all are verified
A restarted step verifies the shards that were sampled but not verified, then samples the
ones that were not sampled: no shard is sampled twice once its file exists.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from evals.evaluate import sample_record, write_results
from evals.problem import Problem
from evals.prompts import render, stop_sequences
from evals.report import format_summary
from evals.sampling import SamplingParams
from evals.score import BatchVerifier, Summary, score_file, summary_path
from restem_client.engines import Completions, Engines


def shard_path(shards_dir: Path, index: int, kind: str) -> Path:
    return shards_dir / f"{index:05d}.{kind}.jsonl"


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def run_estep(problems: list[Problem], engines: Engines, verifier: BatchVerifier,
              params: SamplingParams, out_dir: Path, *, shard_size: int,
              shards_dir: Path | None = None, data_dir: Path | None = None, chat: bool = False,
              shots: int | None = None, label: str = "estep") -> dict[str, Any]:
    """Sample and verify every shard not yet done, then write the step's files; returns the
    metrics (as `evals.evaluate.evaluate` does). Shards go to `shards_dir` (default:
    out_dir/shards)."""
    if not problems:
        raise ValueError("no problems to sample")
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, not {shard_size}")
    if not params.stop:
        params = replace(params, stop=stop_sequences(problems[0], chat))
    by_id = {p.task_id: p for p in problems}
    shards = {k: problems[start:start + shard_size]
              for k, start in enumerate(range(0, len(problems), shard_size))}
    shards_dir = shards_dir or out_dir / "shards"
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

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify") as verifying:
        pending: list[Future] = [verifying.submit(verify, k) for k in sorted(sampled - verified)]

        def done(index: int, completions: Completions) -> None:
            nonlocal samples_done
            lines = [json.dumps({**sample_record(problem, c.text, chat), "tokens": c.tokens,
                                 "finish_reason": c.finish_reason}, ensure_ascii=False) + "\n"
                     for problem, outputs in zip(shards[index], completions, strict=True)
                     for c in outputs]
            _write_atomic(shard_path(shards_dir, index, "samples"), "".join(lines))
            pending.append(verifying.submit(verify, index))
            samples_done += len(lines)
            progress.update(1)
            progress.set_postfix(samples_per_s=f"{samples_done / (time.monotonic() - started):.1f}",
                                 verified=verified_count)

        todo = {k: [render(p, data_dir, chat=chat, shots=shots) for p in shards[k]]
                for k in shards if k not in sampled}
        engines.run(todo, lambda k: replace(params, seed=(params.seed or 0) + k), done)
        sample_s = time.monotonic() - started  # this session's sampling (a resumed step's part)
        for future in pending:
            future.result()  # a verifier failure fails the step here, with its cause
    progress.close()
    timing = {"sample_s": sample_s, "score_s": time.monotonic() - started - sample_s,
              "sampled": samples_done}
    return _merge(shards_dir, sorted(shards), out_dir, by_id, params, label,
                  {"chat": chat, "shots": shots}, timing)


def _merge(shards_dir: Path, indices: list[int], out_dir: Path, problems: dict[str, Problem],
           params: SamplingParams, label: str, config: dict[str, Any],
           timing: dict[str, Any]) -> dict[str, Any]:
    """The step's files from its shards, in shard order."""
    for kind, name in (("samples", "samples.jsonl"), ("results", "samples_results.jsonl")):
        with (out_dir / (name + ".partial")).open("w") as out:
            for index in indices:
                out.write(shard_path(shards_dir, index, kind).read_text())
        os.replace(out_dir / (name + ".partial"), out_dir / name)
    results = out_dir / "samples_results.jsonl"
    summary = Summary.of_results(results, problems)
    metrics = summary.as_dict()
    summary_path(results).write_text(json.dumps(metrics, indent=2) + "\n")
    print(format_summary(metrics, f"== {label}: {len(problems)} problems x {params.n}"),
          file=sys.stderr)
    write_results(out_dir, summary, params, label, **timing,
                  config={**config, "problems": len(problems), "shards": len(indices)})
    return metrics
