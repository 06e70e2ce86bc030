"""SmolLM2-135M-Instruct's model-card figures beside restem's, in the card's own setting.

The card reports, evaluated with lighteval through smollm's task file
(huggingface/smollm, text/evaluation/smollm2: `custom|gsm8k|5|1` and `custom|bbh|3|1`
with `--use_chat_template`, vLLM, greedy), GSM8K 5-shot 1.4 % and BBH 3-shot 28.2 %
(the mean of the 27 tasks' accuracies). This script runs `restem eval` in that setting
(`--prompt lighteval-5shot` / `lighteval-3shot`, `--chat`, greedy; exemplars picked as
lighteval's sampler picks them) on the first N GSM8K test problems and the first N of each
BBH task, and prints per task:

    card | restem (its checker) | lighteval's metric on the same generations | 95 % interval
    | verdicts that agree | prompts lighteval would have cut

lighteval's metrics, as its code at the pinned commit defines them: GSM8K, the first
`#### <number>` of the stripped completion (commas removed) equals the gold's; BBH, the
stripped completion equals the target exactly (case counts). restem's checkers read more:
GSM8K also "The answer is N" and else the last number; BBH ignores case and compares option
letters. Every sample where the two differ is listed by class.

    .venv/bin/python bench/card_check.py --gsm8k 400 --bbh-n 10 --out runs/card-check
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lm_eval_compare import SideFailed, run_side  # noqa: E402  (bench/, this script's dir)

from evals.prompts import render  # noqa: E402
from evals.report import format_table  # noqa: E402
from evals.tasks import first, load  # noqa: E402

CARD = {"gsm8k": 1.4, "bbh": 28.2}  # percent, SmolLM2-135M-Instruct's model card
LIGHTEVAL_CONTEXT = 2048  # smollm's max_model_length: lighteval drops shots past it
_GSM8K_ANSWER = re.compile(r"#### (\-?[0-9\.\,]+)")


def lighteval_gsm8k(text: str) -> str:
    """lighteval's gsm8k normalizer: the first "#### N", commas removed, else "[invalid]"."""
    match = _GSM8K_ANSWER.search(text.strip())
    return match.group(1).strip().replace(",", "") if match else "[invalid]"


def lighteval_pass(task: str, completion: str, gold_text: str) -> bool:
    """lighteval's verdict: empty is wrong; GSM8K compares normalized answers, BBH the
    stripped strings exactly."""
    if not completion.strip():
        return False
    if task == "gsm8k":
        return lighteval_gsm8k(completion) == lighteval_gsm8k(gold_text)
    return completion.strip() == gold_text.strip()


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval for k of n, each bound found by bisection."""
    def term(i: int, p: float) -> float:  # P(X = i), in logs: n may be in the thousands
        return math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                        + i * math.log(p) + (n - i) * math.log1p(-p))

    def at_least_k(p: float) -> float:  # P(X >= k), grows with p
        return sum(term(i, p) for i in range(k, n + 1))

    def at_most_k(p: float) -> float:  # P(X <= k), falls as p grows
        return sum(term(i, p) for i in range(k + 1))

    def bisect(below: Callable[[float], bool]) -> float:  # the p where `below(p)` turns false
        lo, hi = 0.0, 1.0
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if below(mid) else (lo, mid)
        return (lo + hi) / 2

    tail = (1 - level) / 2
    low = 0.0 if k == 0 else bisect(lambda p: at_least_k(p) < tail)
    high = 1.0 if k == n else bisect(lambda p: at_most_k(p) > tail)
    return low, high


def run_eval(args: argparse.Namespace, task: str, prompt: str, limit: int, problems: int,
             out: Path) -> None:
    """restem eval into `out`, unless `out` holds a finished run of this very setting (a run
    of another setting there is an error that names it, never mixed in)."""
    if (out / "results.json").exists():
        config = json.loads((out / "results.json").read_text())["config"]
        kept = (config["problems"], config["prompt"]["variant"], config["backend"],
                config["sampling"]["max_tokens"], config["chat"])
        if kept == (problems, prompt, args.backend, args.max_tokens, True):
            return
        raise SystemExit(f"card_check: {out} holds another run (problems, variant, backend, "
                         f"max tokens, chat: {kept}); delete it to sample this one")
    command = [sys.executable, "-m", "restem_client.cli", "eval", "--task", task,
               "--prompt", prompt, "--chat", "--model", args.model, "--backend", args.backend,
               "--limit", str(limit), "--max-tokens", str(args.max_tokens),
               "--shard-size", "50", "--data-dir", str(args.data_dir), "--out", str(out),
               "--sandbox", "local", *(["--batch-size", str(args.batch_size)]
                                       if args.backend == "hf" else [])]
    run_side(f"restem eval of {task}", command, args.side_timeout, cwd=REPO)


def too_long(args: argparse.Namespace, problems: list, prompt: str, new_tokens: int) -> int:
    """Prompts that lighteval would have cut to fewer shots (prompt + generation size over
    its 2,048-token context), counted with the model's own chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    count = 0
    for p in problems:
        text = tokenizer.apply_chat_template(render(p, args.data_dir, chat=True, prompt=prompt),
                                             tokenize=False, add_generation_prompt=True)
        count += len(tokenizer(text)["input_ids"]) + new_tokens > LIGHTEVAL_CONTEXT
    return count


def summarize(task: str, out: Path, problems: dict) -> dict:
    rows = [json.loads(line) for line in (out / "samples_results.jsonl").open()]
    if len(rows) != len(problems):
        raise SystemExit(f"card_check: {out} holds {len(rows)} samples for {len(problems)} "
                         "problems; delete it to sample again")
    by_group: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    classes: Counter = Counter()
    examples: dict[str, str] = {}
    capped = 0
    for row in rows:
        problem = problems[row["task_id"]]
        gold = problem.solutions[0] if task == "gsm8k" else problem.gold
        theirs = lighteval_pass(task, row["completion"], gold)
        group = problem.meta.get("task", task)
        by_group[group].append((row["passed"], theirs))
        capped += row["finish_reason"] == "length"
        if row["passed"] != theirs:
            key = f"restem {row['verdict']}, lighteval {'pass' if theirs else 'fail'}"
            classes[key] += 1
            examples.setdefault(key, f"{row['task_id']}: {row['completion'][:160]!r} (restem "
                                     f"read {row['extracted']!r}), gold {problem.gold!r}")
    means = {g: (sum(r for r, _ in v) / len(v), sum(t for _, t in v) / len(v), len(v))
             for g, v in by_group.items()}
    agree = sum(r == t for v in by_group.values() for r, t in v)
    return {"n": len(rows), "groups": means, "agree": agree, "classes": classes,
            "examples": examples, "capped": capped,
            "restem_k": sum(r for v in by_group.values() for r, _ in v),
            "theirs_k": sum(t for v in by_group.values() for _, t in v)}


def macro_interval(means: dict, index: int) -> tuple[float, float, float]:
    """The mean of per-task accuracies and a normal 95 % interval from their variances (each
    task's rate taken as (k + 1) / (n + 2) there, so that 0 of 10 still varies)."""
    values = [(m[index], m[2]) for m in means.values()]
    mean = sum(p for p, _ in values) / len(values)
    smoothed = [((p * n + 1) / (n + 2), n) for p, n in values]
    spread = math.sqrt(sum(p * (1 - p) / n for p, n in smoothed)) / len(values)
    return mean, max(0.0, mean - 1.96 * spread), min(1.0, mean + 1.96 * spread)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(Path.home() / ".cache" / "restem" / "models" /
                                               "smollm2-135m-instruct"))
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "card-check")
    parser.add_argument("--backend", default="vllm", help="as lighteval ran it (vllm); hf is "
                        "faster on a CPU where the completions are short (BBH)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per batch (hf)")
    parser.add_argument("--gsm8k", type=int, default=400, help="GSM8K test problems (0: skip)")
    parser.add_argument("--bbh-n", type=int, default=10, help="problems per BBH task (0: skip)")
    parser.add_argument("--max-tokens", type=int, default=256,
                        help="lighteval's GSM8K limit; lighteval sets none for BBH, where a "
                        "completion this long can equal no target anyway")
    parser.add_argument("--side-timeout", type=float, default=4 * 3600)
    args = parser.parse_args()
    args.out = args.out.resolve()
    plan = [("gsm8k", "lighteval-5shot", args.gsm8k), ("bbh", "lighteval-3shot", args.bbh_n)]
    lines = []
    for task, prompt, limit in [p for p in plan if p[2]]:
        out = args.out / task
        problems = first(load(task, "test", args.data_dir), limit)
        try:
            run_eval(args, task, prompt, limit, len(problems), out)
        except SideFailed as exc:
            print(f"card_check: {exc}", file=sys.stderr)
            return 2
        result = summarize(task, out, {p.task_id: p for p in problems})
        cut = too_long(args, problems, prompt, 256 if task == "gsm8k" else 0)
        n = result["n"]
        if task == "gsm8k":
            ours, theirs = result["restem_k"] / n, result["theirs_k"] / n
            low, high = clopper_pearson(result["theirs_k"], n)
            figures = (f"{ours:.1%} ({result['restem_k']}/{n})",
                       f"{theirs:.1%} ({result['theirs_k']}/{n})",
                       f"{low:.1%} to {high:.1%} (exact)")
        else:
            ours = macro_interval(result["groups"], 0)[0]
            theirs, low, high = macro_interval(result["groups"], 1)
            figures = (f"{ours:.1%} (mean of {len(result['groups'])} tasks)",
                       f"{theirs:.1%}", f"{low:.1%} to {high:.1%} (normal, smoothed)")
        lines.append([f"{task} ({prompt}, {n} problems)", f"{CARD[task]:.1f}%", *figures,
                      f"{result['agree']}/{n}", f"{cut}/{n}", f"{result['capped']}/{n}"])
        if task == "bbh":
            for group, (r, t, k) in sorted(result["groups"].items()):
                print(f"  bbh/{group}: restem {r:.0%}, lighteval metric {t:.0%} of {k}")
        for key, count in result["classes"].most_common():
            print(f"  {task}: {count} x {key}; e.g. {result['examples'][key]}")
    print(format_table(["task", "card", "restem (its checker)", "lighteval metric, same text",
                        "95% interval (lighteval metric)", "verdicts agree",
                        "prompts lighteval cuts", "hit --max-tokens"], lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
