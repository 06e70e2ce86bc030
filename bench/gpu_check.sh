#!/usr/bin/env bash
# The fine-tuning script on a bare GPU machine, in one command and under 8 minutes:
# bf16 FSDP steps on a randomly initialized Llama 3.2 1B shape (no downloads, no network;
# only torch and transformers), save, reload and greedy generation, fp32 for two steps,
# activation checkpointing on and off, accumulation 4 x 2 against 1 x 8, and MFU at two
# micro-batch sizes, on every visible GPU, each run's memory estimate beside its peak,
# and vLLM's tokens/s with and without seeds where vLLM is installed. Every run is tried
# even when another failed, and it always prints one JSON summary (a failed run with its error line); exit 0
# when every run and check passed, 1 when one failed, 2 when the machine cannot run it.
#
#   bench/gpu_check.sh [--summary FILE] [--steps 12] [--peak-tflops 989]
#   bench/gpu_check.sh --cpu-smoke      # the same plan, tiny model, bf16 on the CPU
#   bench/gpu_check.sh --runs bf16_micro8,fp32 --keys fp32:lr=1e-4   # part of the plan
#
# Python: $PYTHON, else the repository's .venv, else python3. The repository need not be
# installed: it runs from the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${PYTHON:-}" ]]; then py=$PYTHON
elif [[ -x .venv/bin/python ]]; then py=.venv/bin/python
else py=python3
fi

if [[ " $* " != *" --cpu-smoke "* ]]; then
    if [[ ! -e /dev/nvidia0 ]] && ! command -v nvidia-smi >/dev/null; then
        echo "gpu_check: no NVIDIA GPU here (no /dev/nvidia0, no nvidia-smi); on a CPU" \
             "machine run bench/gpu_check.sh --cpu-smoke" >&2
        exit 2
    fi
fi

# Offline: nothing may reach for the Hugging Face hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# restem_client reads its version from the installed metadata; an uninstalled checkout
# gets a stand-in record for the length of this run.
if ! "$py" -c 'import importlib.metadata as m; m.version("restem")' 2>/dev/null; then
    meta=$(mktemp -d)
    trap 'rm -rf "$meta"' EXIT
    mkdir "$meta/restem-0.0.0.dist-info"
    printf 'Metadata-Version: 2.1\nName: restem\nVersion: 0.0.0\n' \
        >"$meta/restem-0.0.0.dist-info/METADATA"
    export PYTHONPATH="$PYTHONPATH:$meta"
fi

# The check stops a run that would pass its 450 s, so that its summary comes out before
# the hard stop at 480 s.
status=0
timeout 480 "$py" bench/finetune.py --check --time-limit 450 "$@" || status=$?
if [[ $status -eq 124 ]]; then
    echo "gpu_check: stopped after its 8 minutes" >&2
fi
exit "$status"
