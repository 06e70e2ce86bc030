"""The ReST-EM loop: config errors at start, the filter, and a whole run of 2 iterations on
SmolLM2 with a handful of arithmetic problems, killed between stages and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest

from evals.tasks import load
from restem_client.config import ConfigError, load_config, to_toml
from restem_client.restem import Run, RunConfig, select
from tests.conftest import REPO, write_jsonl


@pytest.mark.parametrize("overrides, named", [
    (["learning_rate=1"], "unknown config key 'learning_rate'"),
    (["finetune.lrr=1"], "unknown config key 'finetune.lrr'"),
    (["model=/does/not/exist"], "config key 'model': model path does not exist"),
    (["task=chess"], "config key 'task': 'chess' has no verifier"),
    (["mode=distill"], "config key 'teacher' is required"),
    (["iterations=zero"], "iterations='zero' is not a valid int"),
    (["finetune.schedule=linear"], "config table 'finetune'"),
    (["task=humaneval", "estep_shots=2"], "config key 'estep_shots': humaneval prompts take"),
])
def test_bad_config_fails_at_start_naming_the_key(overrides: list[str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(RunConfig, None, overrides)


def test_config_file_keys_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('task = "arith"\nsamples = 3\n')
    with pytest.raises(ConfigError, match="unknown config key 'samples'"):
        load_config(RunConfig, path)


def test_a_run_directory_resumes_only_under_its_own_configuration(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = load_config(RunConfig, None, [f"run_dir={run_dir}", "cap=4"])
    (run_dir / "config.toml").write_text(to_toml(asdict(config)))
    changed = load_config(RunConfig, None, [f"run_dir={run_dir}", "cap=2", "finetune.lr=1e-4",
                                            "iterations=5"])
    with pytest.raises(ConfigError, match=r"config keys changed since .*config.toml was "
                       r"written \(cap 4 -> 2, finetune .*\); give the run another name=") as exc:
        Run(changed).run()
    assert "iterations" not in str(exc.value)  # more iterations is how a run is extended
    assert "cap = 4" in (run_dir / "config.toml").read_text()  # nothing was overwritten


def test_a_run_directory_from_before_a_key_existed_resumes(tmp_path: Path) -> None:
    """A saved config.toml without a newer key ran with that key's default behaviour."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = load_config(RunConfig, None, [f"run_dir={run_dir}"])
    saved = {k: v for k, v in asdict(config).items()
             if k not in ("estep_shown_tests", "test_from_train", "transfer_limit")}
    (run_dir / "config.toml").write_text(to_toml(saved))
    Run(config)._check_resumable()  # no error
    with pytest.raises(ConfigError, match="test_from_train 0 -> 2"):
        Run(load_config(RunConfig, None, [f"run_dir={run_dir}", "test_from_train=2"])
            )._check_resumable()


def _results(tmp_path: Path) -> Path:
    lines = []
    for task in ("a", "b", "c"):
        for k in range(15):
            verdict = "PASS" if (task != "c" and k % 2 == 0) else "FAIL"
            lines.append({"task_id": task, "completion": f"{task} answer {k % 12}",
                          "verdict": verdict})
    return write_jsonl(tmp_path / "results.jsonl", lines)


def test_filter_keeps_only_passing_samples_under_the_cap(tmp_path: Path) -> None:
    results = _results(tmp_path)
    prompts = {"a": "pa", "b": "pb", "c": "pc"}
    kept = select(results, prompts, cap=3, seed="0/iter_1")
    by_task: dict[str, list[str]] = {}
    for record in kept:
        by_task.setdefault(record["task_id"], []).append(record["completion"])
        assert record["prompt"] == prompts[record["task_id"]]
    assert set(by_task) == {"a", "b"}  # "c" has no correct sample
    for texts in by_task.values():
        assert len(texts) == 3 and len(set(texts)) == 3
        assert all(int(t.split()[-1]) % 2 == 0 for t in texts)  # PASS lines only
    assert select(results, prompts, cap=3, seed="0/iter_1") == kept  # deterministic
    assert select(results, prompts, cap=3, seed="1/iter_1") != kept
    # fewer distinct correct texts than the cap: all of them (duplicates count once)
    assert len([r for r in select(results, prompts, cap=10, seed="x") if r["task_id"] == "a"]) \
        == 6


def _start(run_dir: Path, config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "restem_client.cli", "run", "--config",
                             str(config)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow
def test_two_iterations_killed_between_stages_and_resumed(
        tmp_path: Path, smollm2: Path, data_dir: Path, run_toml: Callable[..., Path]) -> None:
    run_dir = tmp_path / "run"
    config = run_toml(name="it", model=str(smollm2), num_problems=8, val_limit=6, test_limit=6,
                      iterations=2, early_stop=False, estep_shots=3, samples_per_problem=8,
                      cap=2, max_tokens=80, seed=3,
                      finetune={"max_steps": 2, "micro_batch_size": 4, "global_batch_size": 4,
                                "lr": 1e-5, "max_seq_len": 192})
    process = _start(run_dir, config)
    kept = run_dir / "iter_1" / "train.jsonl"
    deadline = time.monotonic() + 1500  # a base eval and an E-step on a 2-core CPU
    while not kept.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"no kept set within 1500 s; the loop's log: "
                        f"{process.communicate()[1][-3000:]}")
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # killed between filtering and fine-tuning
    process.wait()
    assert not (run_dir / "iter_1" / "checkpoint").exists()
    finished = {p: p.stat().st_mtime_ns for p in (
        run_dir / "base" / "eval" / "test" / "results.json",
        run_dir / "iter_1" / "generate" / "samples_results.jsonl", kept)}

    process = _start(run_dir, config)
    _, err = process.communicate(timeout=1800)
    assert process.returncode == 0, err[-3000:]
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone"
    assert "base: greedy" not in err  # the finished steps were skipped

    summary = json.loads((run_dir / "summary.json").read_text())
    assert [it["iteration"] for it in summary["iterations"]] == [1, 2]
    for entry in [summary["base"], *summary["iterations"]]:
        assert 0 <= entry["test_pass@1"] <= 1 and 0 <= entry["val_pass@1"] <= 1
    assert summary["base"]["train_reward"] is not None
    assert summary["best"]["iteration"] in range(len(summary["iterations"]) + 1)
    assert (run_dir / "pass_at_1.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(run_dir.rglob("*.partial"))

    for i, entry in enumerate(summary["iterations"], start=1):
        step = run_dir / f"iter_{i}"
        samples = (step / "generate" / "samples_results.jsonl").read_text().splitlines()
        assert len(samples) == 8 * 8 and all("verdict" in json.loads(s) for s in samples)
        passed = {json.loads(s)["completion"] for s in samples if json.loads(s)["passed"]}
        train = [json.loads(line) for line in (step / "train.jsonl").read_text().splitlines()]
        assert train and all(r["completion"] in passed for r in train)
        assert entry["kept_samples"] == len(train)
        tuned = json.loads((step / "checkpoint" / "restem-finetune.json").read_text())
        assert tuned["model"] == str(smollm2)  # every iteration starts from the base
        assert tomllib.loads((step / "finetune.toml").read_text())["model"] == str(smollm2)
        assert (step / "checkpoint" / "model.safetensors").is_file()
    assert "iter_2: generate" in err  # iteration 2 sampled from iteration 1's model
    # The E-step saw the worked examples; the training set has the plain prompt.
    generated = json.loads((run_dir / "iter_1" / "generate" / "results.json").read_text())
    assert generated["config"]["shots"] == 3
    # Iteration 1's model learnt the plain prompt, so iteration 2 samples it with that.
    generated = json.loads((run_dir / "iter_2" / "generate" / "results.json").read_text())
    assert generated["config"]["shots"] is None
    prompt = json.loads((run_dir / "iter_1" / "train.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in prompt["prompt"]] == ["user"]


@pytest.mark.slow
@pytest.mark.namespace
def test_the_code_loop_on_mbpp_audits_its_kept_set_and_tests_transfer_to_humaneval(
        tmp_path: Path, tiny_model: Path, data_dir: Path, run_toml: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    """`task = "mbpp"` end to end on a tiny model: the E-step's samples verified in the
    sandbox, the kept-set audit, the SFT baseline on MBPP's reference solutions, and every
    model also tested on HumanEval. (A random model solves nothing, so iteration 1 stops.)"""
    config = run_toml(name="code", task="mbpp", model=str(tiny_model), data_dir=str(data_dir),
                      sampler="hf", sandbox="namespace", num_problems=4, val_limit=2,
                      test_limit=2, transfer=["humaneval"], transfer_limit=3,
                      samples_per_problem=2, iterations=1, sft_baseline=True, max_tokens=16,
                      finetune={"max_steps": 1, "micro_batch_size": 4, "global_batch_size": 4,
                                "max_seq_len": 256})
    summary = Run(load_config(RunConfig, config)).run()
    run_dir = tmp_path / "run"
    for step in ("base", "sft"):
        results = [json.loads(line) for line in (run_dir / step / "eval" / "humaneval" /
                                                 "samples_results.jsonl").read_text().splitlines()]
        assert [r["task_id"] for r in results] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
        assert not {r["verdict"] for r in results} & {"SANDBOX_ERROR", "INVALID_REQUEST"}
        assert summary[step]["humaneval_pass@1"] == sum(r["passed"] for r in results) / 3
    generated = (run_dir / "iter_1" / "generate" / "samples_results.jsonl").read_text()
    assert generated.count("\n") == 8 and '"verdict": "SANDBOX_ERROR"' not in generated
    audit = json.loads((run_dir / "iter_1" / "audit.json").read_text())
    assert audit["problems"] == 4 and audit["samples"] == 8
    assert audit["pass_all"] == summary["base"]["train_reward"] * 8
    sft = [json.loads(line) for line in (run_dir / "sft" / "train.jsonl").read_text().splitlines()]
    train = {p.task_id: p for p in load("mbpp", "train", data_dir)}
    assert len(sft) == 4 and all(r["completion"] == train[r["task_id"]].solutions[0] for r in sft)
    for record in sft:  # trained with the prompt it is tested with: every assert shown
        [message] = record["prompt"]
        assert all(a in message["content"] for a in train[record["task_id"]].meta["asserts"])
    assert "humaneval pass@1 %" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.namespace
def test_the_code_loop_runs_on_the_apps_sample(tmp_path: Path, tiny_model: Path,
                                               data_dir: Path, run_toml: Callable[..., Path]
                                               ) -> None:
    """`task = "apps"` on the local 5-problem sample (stdin and call-based tests): one
    problem each for validation and test, three to train on."""
    config = run_toml(name="apps", task="apps", model=str(tiny_model), data_dir=str(data_dir),
                      sampler="hf", sandbox="namespace", val_from_train=1, test_from_train=1,
                      samples_per_problem=2, iterations=1, sft_baseline=True, max_tokens=16,
                      finetune={"max_steps": 1, "micro_batch_size": 4, "global_batch_size": 4,
                                "max_seq_len": 256})
    summary = Run(load_config(RunConfig, config)).run()
    run_dir = tmp_path / "run"
    generated = [json.loads(line) for line in (run_dir / "iter_1" / "generate" /
                                               "samples_results.jsonl").read_text().splitlines()]
    assert len(generated) == 3 * 2
    assert not {r["verdict"] for r in generated} & {"SANDBOX_ERROR", "INVALID_REQUEST"}
    assert not (run_dir / "iter_1" / "audit.json").exists()  # APPS prompts show no tests
    sft = (run_dir / "sft" / "train.jsonl").read_text().splitlines()
    assert [json.loads(r)["task_id"] for r in sft] == ["apps/1", "apps/111", "apps/2287"]
    for step in ("base", "sft"):
        assert 0 <= summary[step]["test_pass@1"] <= 1
    test = json.loads((run_dir / "base" / "eval" / "test" / "samples.jsonl").read_text())
    assert test["task_id"] == "apps/2404"
