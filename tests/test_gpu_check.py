"""`bench/gpu_check.sh`, the one script a GPU machine runs, stays runnable as written: its
`--cpu-smoke` mode runs the same plan (bf16 steps, activation checkpointing, accumulation
4 x 2 against 1 x 8, save, reload and generate, fp32) on a tiny model on this CPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_the_gpu_check_runs_its_plan_on_the_cpu(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    done = subprocess.run([str(REPO / "bench" / "gpu_check.sh"), "--cpu-smoke", "--summary",
                           str(summary)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(summary.read_text())
    assert report["ok"] is True and report["mode"] == "cpu-smoke"
    failed = [name for name, passed in report["checks"].items() if passed is False]
    assert not failed, failed
    assert report["reload"]["dtype"] == "bfloat16"  # saved in the base model's dtype
    assert max(report["loss_gaps"].values()) < 1e-3  # same losses, however the batch is cut
