#!/usr/bin/env bash
# `make demo`: prepare the embedded SmolLM2-135M-Instruct, then run the SFT baseline and two
# ReST-EM iterations on the embedded arithmetic task (configs/demo.toml) and print the table.
# `make demo-mbpp` runs the same with CONFIG=configs/mbpp.toml (the code task).
# A killed demo continues where it stopped when started again; `rm -rf runs/<name>` restarts it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
started=$(date +%s)
$PY -m restem_client.cli prepare-model smollm2-135m-instruct >/dev/null
CONFIG=${CONFIG:-configs/demo.toml}
name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$CONFIG")
$PY -m restem_client.cli run --config "$CONFIG" "$@"
echo "demo: $(( $(date +%s) - started )) s; files in runs/$name (summary.json, pass_at_1.png)"
