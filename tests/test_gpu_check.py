"""`bench/gpu_check.sh`, the one script a GPU machine runs, stays runnable as written: its
`--cpu-smoke` mode runs the same plan (bf16 steps, activation checkpointing, accumulation
4 x 2 against 1 x 8, save, reload and generate, fp32) on a tiny model on this CPU. A run that
fails is one line in a summary that still comes out, with the figures of the other runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.finetune import error_line, peak_tflops
from tests.conftest import REPO

GPU_CHECK = str(REPO / "bench" / "gpu_check.sh")


@pytest.mark.slow
def test_the_gpu_check_runs_its_plan_on_the_cpu(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    done = subprocess.run([GPU_CHECK, "--cpu-smoke", "--summary", str(summary)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(summary.read_text())
    assert report["ok"] is True and report["mode"] == "cpu-smoke"
    assert report["failed"] == []
    failed = [name for name, passed in report["checks"].items() if passed is False]
    assert not failed, failed
    assert report["reload"]["dtype"] == "bfloat16"  # saved in the base model's dtype
    assert max(report["loss_gaps"].values()) < 1e-3  # same losses, however the batch is cut
    runs = report["runs"]
    assert all(runs[label]["step_s_median"] > 0 for label in runs if label != "fp32")
    # vLLM (the CPU build here) samples the trained checkpoint, with and without seeds
    sampling = report["sampling"]
    assert sampling["seeded_tokens_per_s"] > 0 and sampling["unseeded_tokens_per_s"] > 0
    # train_memory's estimate beside each run (measured beside it on a GPU)
    assert 0 < runs["activation_checkpointing"]["estimated_gpu_gib"] \
        < runs["bf16_micro8"]["estimated_gpu_gib"] < runs["bf16_micro16"]["estimated_gpu_gib"]


@pytest.mark.slow
def test_a_failed_run_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    """bf16_micro8 cannot write its output (its `out` is under a file): the check goes on to
    fp32, then prints and writes its summary, which names the failed run by its error line,
    fails every check that needs it, keeps the other run's figures, and exits 1."""
    (tmp_path / "a-file").write_text("")
    summary = tmp_path / "summary.json"
    done = subprocess.run([GPU_CHECK, "--cpu-smoke", "--runs", "bf16_micro8,fp32",
                           "--keys", f"bf16_micro8:out={tmp_path / 'a-file' / 'out'}",
                           "--summary", str(summary)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    report = json.loads(summary.read_text())
    assert json.loads(done.stdout) == report  # printed as well as written
    assert report["ok"] is False and report["failed"] == ["bf16_micro8"]
    error = report["runs"]["bf16_micro8"]["error"]
    assert error.startswith("NotADirectoryError: ") and "\n" not in error, error
    assert "gpu_check: bf16_micro8 NotADirectoryError" in done.stderr
    assert report["runs"]["bf16_micro8"]["losses"] == []
    assert report["reload"] is None  # nothing saved, nothing to reload
    checks = report["checks"]
    # a check never passes on a failed run, even where another run it needs was left out
    assert [name for name, passed in checks.items() if passed is False] == [
        "loss_decreases", "activation_checkpointing_same_losses", "accumulation_same_losses",
        "saved_in_base_dtype", "reload_generates"]
    assert checks["activation_checkpointing_less_memory"] is None  # not on the CPU
    # the run after the failed one ran, with its figures and its check
    assert "error" not in report["runs"]["fp32"]
    assert len(report["runs"]["fp32"]["losses"]) == 2
    assert report["runs"]["fp32"]["precision"] == "fp32"
    assert checks["fp32_trains"] is True


# The end of the stderr of a run that ran out of GPU memory (bf16_micro16 on the first H100
# check), as torchrun passed it on: the worker's traceback, then torchrun's own.
OOM_STDERR = """\
[rank0]:   File "/opt/torch/.venv/lib/python3.12/site-packages/torch/nn/modules/linear.py", \
line 134, in forward
[rank0]:     return F.linear(input, self.weight, self.bias)
[rank0]:            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 464.00 MiB. GPU 0 has \
a total capacity of 79.18 GiB of which 266.56 MiB is free. Process 479 has 3.39 GiB memory in \
use. Including non-PyTorch memory, this process has 75.51 GiB memory in use. Of the allocated \
memory 66.34 GiB is allocated by PyTorch, and 7.88 GiB is reserved by PyTorch but unallocated.

fine-tuning:   8%|▊         | 1/12 [00:02<00:25,  2.32s/step, loss=12.4007, lr=1.50e-04]
E1206 10:58:12.425000 810 torch/distributed/elastic/multiprocessing/api.py:986] failed \
(exitcode: 1) local_rank: 0 (pid: 832) of binary: /opt/torch/.venv/bin/python3
Traceback (most recent call last):
  File "/opt/torch/.venv/lib/python3.12/site-packages/torch/distributed/launcher/api.py", \
line 317, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
restem_client.finetune FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 832)
============================================================
"""


def test_the_error_of_a_run_is_its_one_meaningful_line() -> None:
    line = error_line(OOM_STDERR)
    assert line is not None
    assert line.startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")
    assert line.endswith("reserved by PyTorch but unallocated.")
    # the script's own error (a config error: no traceback) and a bare stderr
    assert error_line("finetune: 4 samples\nfinetune: config: micro_batch_size must be at "
                      "least 1\n") == "finetune: config: micro_batch_size must be at least 1"
    assert error_line("killed\n") == "killed"
    assert error_line("") is None
    assert len(error_line("RuntimeError: " + "x" * 5000) or "") == 600


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 NVL", 835.0), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("Tesla T4", None),
])
def test_each_gpu_model_gets_its_own_dense_bf16_peak(name: str, peak: float | None) -> None:
    assert peak_tflops(name) == peak
