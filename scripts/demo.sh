#!/usr/bin/env bash
# `make demo`: the most complete end-to-end job the project can run today. The ReST-EM
# loop replaces it once it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
$bin/restem --version
if docker info >/dev/null 2>&1; then
    echo "demo: running a program in a locked-down container of the sandbox base image"
    docker run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
        --user 65534:65534 --pids-limit 64 --memory 256m --memory-swap 256m --env-file /dev/null \
        restem-sandbox-base:bookworm python3 -c \
        'import os, sys; print(f"python {sys.version.split()[0]} as uid {os.getuid()}; sum of 1..100 =", sum(range(101)))'
else
    echo "demo: no Docker engine; skipping the sandbox step"
fi
