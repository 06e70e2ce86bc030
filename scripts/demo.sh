#!/usr/bin/env bash
# `make demo`: the most complete end-to-end job the project can run today: score the 500
# MATH-500 reference solutions, plus each solution against the next problem's answer (which
# must fail), through `restem score`; then run a program in a locked-down sandbox container.
# The ReST-EM loop replaces it once it exists.
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
if docker info >/dev/null 2>&1; then
    echo "demo: running a program in a locked-down container of the sandbox base image"
    docker run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
        --user 65534:65534 --pids-limit 64 --memory 256m --memory-swap 256m \
        restem-sandbox-base:bookworm python3 -c \
        'import os, sys; print(f"python {sys.version.split()[0]} as uid {os.getuid()}; sum of 1..100 =", sum(range(101)))'
else
    echo "demo: no Docker engine; skipping the sandbox step"
fi
