"""What a run directory says about its models: summary.json's entries (one per model: the
base, the SFT baseline, each iteration) and the table `restem run` prints at the end. It
reads only the files the loop wrote (run_layout), so a finished or stopped run can be
reported again without running anything."""

from __future__ import annotations

import json
from typing import Any

from evals.report import format_table
from restem_client.run_layout import RunLayout, StepLayout, transfer_split


def results(step: StepLayout, split: str) -> dict[str, Any]:
    """An evaluation's results (results.json's "results")."""
    return json.loads(step.eval_results(split).read_text())["results"]


def pass_at_1(step: StepLayout, split: str) -> float:
    return results(step, split)["pass@1"]


def train_reward(step: StepLayout) -> float | None:
    """pass@1 of the E-step's samples: the reward of the policy that sampled them."""
    path = step.generate_results
    return json.loads(path.read_text())["results"]["pass@1"] if path.exists() else None


def summarize(layout: RunLayout, *, task: str, mode: str, transfer: list[str],
              base: str) -> dict[str, Any]:
    """summary.json: each model's test and validation pass@1, transfer pass@1 and train
    reward (that of the samples it drew in the next E-step), and the best by validation."""
    def entry(step: StepLayout, reward_step: StepLayout | None) -> dict[str, Any]:
        test = results(step, "test")
        transferred = {f"{name}_pass@1": pass_at_1(step, transfer_split(name))
                       for name in transfer if step.eval(transfer_split(name)).exists()}
        return {"train_reward": train_reward(reward_step) if reward_step else None,
                "val_pass@1": pass_at_1(step, "val"), "test_pass@1": test["pass@1"],
                **transferred, "test_breakdown": test.get("breakdown", {})}

    distill = mode == "distill"
    out: dict[str, Any] = {"task": task, "mode": mode, "transfer": list(transfer),
                           "base": {"model": base, **entry(
                               layout.step("base"), None if distill else layout.iteration(1))}}
    if layout.step("sft").eval_results("test").exists():
        out["sft"] = entry(layout.step("sft"), None)
    iterations = []
    i = 1
    while layout.iteration(i).eval_results("test").exists():
        step = layout.iteration(i)
        iterations.append({"iteration": i, "kept_samples": step.kept.read_text().count("\n"),
                           **entry(step, None if distill else layout.iteration(i + 1)),
                           **({"audit": json.loads(step.audit.read_text())}
                              if step.audit.exists() else {})})
        i += 1
    out["iterations"] = iterations
    candidates = [{"iteration": 0, **out["base"]}, *iterations]
    best = max(candidates, key=lambda e: e["val_pass@1"])  # earliest wins a tie
    out["best"] = {"iteration": best["iteration"], "val_pass@1": best["val_pass@1"],
                   "test_pass@1": best["test_pass@1"], "train_reward": best["train_reward"]}
    return out


def table(summary: dict[str, Any]) -> str:
    """The summary as the text table `restem run` prints."""
    def pct(value: float | None) -> str | None:
        return None if value is None else f"{100 * value:.1f}"

    transfer = [f"{name}_pass@1" for name in summary.get("transfer", [])]
    keys = ("test_pass@1", "val_pass@1", *transfer, "train_reward")
    rows = [["base", *(pct(summary["base"].get(k)) for k in keys)]]
    if "sft" in summary:
        rows.append(["SFT", *(pct(summary["sft"].get(k)) for k in keys[:-1]), None])
    for it in summary["iterations"]:
        rows.append([f"iteration {it['iteration']}", *(pct(it.get(k)) for k in keys)])
    header = ["model", "test pass@1 %", "val pass@1 %",
              *(f"{k.removesuffix('_pass@1')} pass@1 %" for k in transfer), "train reward %"]
    return (f"\n{summary['task']}: best is iteration {summary['best']['iteration']} "
            f"(0 = base)\n" + format_table(header, rows))
