"""Experiment tracking with the real libraries and no network: TensorBoard event files read back
with TensorBoard's EventAccumulator, MLflow in a SQLite store read back with MlflowClient, W&B
in offline mode read back from its run-<id>.wandb files (W&B's records, parsed with its own
protobuf classes). A resumed run appends to the same tracker runs; a tracker that cannot
start warns once and the run goes on; other ranks log nothing; and a demo-sized `restem run`
with all three trackers."""

from __future__ import annotations

import json
import logging
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from restem_client.config import ConfigError, load_config
from restem_client.restem import RunConfig
from restem_client.tracking import TRACKERS, check_trackers, metric_name, open_tracker

pytest.importorskip("wandb", reason="the tracking extra is not installed")


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with MLflow's tables, made once: creating them takes seconds."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_store: Path) -> Path:
    """Every tracker writes under tmp_path, and none can reach a network or a login."""
    import wandb

    monkeypatch.chdir(tmp_path)  # MLflow keeps a SQLite store's artifacts in ./mlruns
    shutil.copy(empty_mlflow_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    wandb.teardown()  # W&B reads its environment once per process
    yield tmp_path
    wandb.teardown()


def wandb_records(run_dir: Path) -> list:
    """Every record of every offline run file under run_dir/wandb, as W&B's Record protos.
    A .wandb file is W&B's header then LevelDB log blocks of 32 KiB: records of
    (crc32 u32, length u16, type u8) + data, type 1 whole, 2/3/4 first/middle/last piece."""
    from wandb.proto import wandb_internal_pb2

    out = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        data = path.read_bytes()
        assert data[:4] == b":W&B"
        position, pieces = 7, []
        while position + 7 <= len(data):
            left = 32768 - position % 32768
            _, length, kind = struct.unpack_from("<IHB", data, position)
            if left < 7 or (kind == 0 and length == 0):  # the rest of a block is padding
                position += left
                continue
            pieces.append(data[position + 7:position + 7 + length])
            position += 7 + length
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(b"".join(pieces))
                out.append(record)
                pieces = []
    return out


def wandb_history(run_dir: Path) -> list[dict]:
    """The offline runs' history rows, by W&B step."""
    rows = [{item.key or "/".join(item.nested_key): json.loads(item.value_json)
             for item in record.history.item}
            for record in wandb_records(run_dir) if record.WhichOneof("record_type") == "history"]
    return sorted(rows, key=lambda row: row["_step"])


def test_tracker_names_are_checked_and_metric_names_suit_every_tracker() -> None:
    assert check_trackers(["wandb", "tensorboard", "wandb"]) == ["wandb", "tensorboard"]
    with pytest.raises(ValueError, match=r"unknown tracker 'neptune' \(expected any of"):
        check_trackers(["neptune"])
    with pytest.raises(ValueError, match="expected a list of tracker names"):
        check_trackers("wandb")
    assert metric_name("test/level/Level 5/pass@1") == "test/level/Level 5/pass_at_1"
    assert metric_name("bbh/task(x)/maj@8") == "bbh/task_x_/maj_at_8"
    config = load_config(RunConfig, None, ["tracking=tensorboard,mlflow"])
    assert config.tracking == ["tensorboard", "mlflow"]
    assert load_config(RunConfig, None).tracking == []
    with pytest.raises(ConfigError, match="config key 'tracking': unknown tracker 'tb'"):
        load_config(RunConfig, None, ["tracking=tb"])


def test_eval_results_flatten_to_named_numbers() -> None:
    from evals.report import flat_metrics
    from evals.score import Summary

    summary = Summary(count=4)
    summary.verdicts.update({"PASS": 3, "FAIL": 1})
    for task_id, task, passes, answer in (("a", "navigate", [1, 1], "yes"),
                                          ("b", "snarks", [1, 0], "x")):
        for p in passes:
            summary.add(task_id, bool(p), answer if p else None, {"task": task})
    assert flat_metrics(summary.as_dict()) == {
        "samples": 4, "accuracy": 0.75, "pass@1": 0.75, "maj@1": 0.75, "maj@2": 1.0,
        "verdict/FAIL": 1, "verdict/PASS": 3, "task/navigate/pass@1": 1.0,
        "task/snarks/pass@1": 0.5, "task_average": 0.75}


def test_each_tracker_gets_params_metrics_and_files_and_a_resumed_run_appends(
        offline: Path) -> None:
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = offline / "run"
    (run_dir / "iter_1").mkdir(parents=True)
    (run_dir / "summary.json").write_text('{"best": {"iteration": 1}}\n')
    (run_dir / "iter_1" / "train.jsonl").write_text('{"completion": "42"}\n')
    config = {"name": "t", "iterations": 2, "finetune": {"lr": 1e-5}}

    with open_tracker(TRACKERS, run_dir, config, name="t") as tracker:
        assert tracker.active == list(TRACKERS)
        with tracker.once("base") as todo:
            assert todo
            tracker.log({"val/pass@1": 0.25, "estep/reward": None}, step=0, axis="iteration")
        for step, loss in ((1, 2.0), (2, 1.5)):
            tracker.log({"iter1/train/loss": loss}, step=step, axis="iter1/train/step")
        tracker.close(artifacts=[run_dir / "summary.json", run_dir / "iter_1" / "train.jsonl",
                                 run_dir / "missing.png"])
    first = json.loads((run_dir / "tracking.json").read_text())

    with open_tracker(TRACKERS, run_dir, config, name="t") as tracker:  # the run resumes
        with tracker.once("base") as todo:
            assert not todo  # every tracker has it
        with tracker.once("iter_1") as todo:
            tracker.log({"val/pass@1": 0.5}, step=1, axis="iteration")
        tracker.close()
    state = json.loads((run_dir / "tracking.json").read_text())
    assert state["mlflow"]["run_id"] == first["mlflow"]["run_id"]
    assert state["wandb"]["id"] == first["wandb"]["id"]
    assert all(state[t]["logged"] == ["base", "iter_1"] for t in TRACKERS)

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/pass_at_1")] == [(0, 0.25), (1, 0.5)]
    assert [e.step for e in events.Scalars("iter1/train/loss")] == [1, 2]
    texts = events.Tags()["tensors"]
    assert "config/text_summary" in texts and "artifacts/summary.json/text_summary" in texts
    assert b"finetune.lr = 1e-05" in events.Tensors("config/text_summary")[0] \
        .tensor_proto.string_val[0]

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("restem").experiment_id])
    assert [r.info.run_id for r in runs] == [state["mlflow"]["run_id"]]  # one run, continued
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "t"
    assert run.data.params["finetune.lr"] == "1e-05" and run.data.params["iterations"] == "2"
    history = client.get_metric_history(run.info.run_id, "val/pass_at_1")
    assert [(m.step, m.value) for m in history] == [(0, 0.25), (1, 0.5)]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "iter1/train/loss")] \
        == [2.0, 1.5]
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"summary.json",
                                                                       "iter_1"}
    assert [f.path for f in client.list_artifacts(run.info.run_id, "iter_1")] == [
        "iter_1/train.jsonl"]

    records = wandb_records(run_dir)
    runs_seen = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert {r.run_id for r in runs_seen} == {state["wandb"]["id"]} and len(runs_seen) == 2
    rows = wandb_history(run_dir)
    assert [row["_step"] for row in rows] == [0, 1, 2, 3]  # the step goes on across resumes
    assert [(row["iteration"], row["val/pass_at_1"]) for row in rows
            if "val/pass_at_1" in row] == [(0, 0.25), (1, 0.5)]
    assert [row["iter1/train/loss"] for row in rows if "iter1/train/loss" in row] == [2.0, 1.5]
    axes = {r.metric.name: r.metric.step_metric for r in records
            if r.WhichOneof("record_type") == "metric"}
    assert axes["val/pass_at_1"] == "iteration"
    assert axes["iter1/train/loss"] == "iter1/train/step"
    config_items = {i.key: json.loads(i.value_json) for r in runs_seen for i in r.config.update}
    assert config_items["finetune"] == {"lr": 1e-5} and config_items["iterations"] == 2
    saved = {f.path for r in records if r.WhichOneof("record_type") == "files"
             for f in r.files.files}
    assert {"summary.json", "iter_1/train.jsonl"} <= saved


def test_a_tracker_that_cannot_start_warns_once_and_the_run_goes_on(
        offline: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import socket

    import wandb

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")  # MLflow's retries
    monkeypatch.setenv("WANDB_MODE", "online")  # and no API key anywhere
    wandb.teardown()
    run_dir = offline / "run"
    with caplog.at_level(logging.WARNING, logger="restem.tracking"):
        tracker = open_tracker(TRACKERS, run_dir, {"name": "t"})
        tracker.log({"val/pass@1": 0.5}, step=0)
        tracker.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "restem.tracking"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("tracking: mlflow did not start (RuntimeError: no MLflow "
                                  f"server answered at http://127.0.0.1:{port} within 10 s")
    assert warnings[1].startswith("tracking: wandb did not start (RuntimeError: no W&B API key")
    assert all("\n" not in w and w.endswith("the run goes on without it") for w in warnings)
    assert tracker.active == ["tensorboard"]  # the tracker that could start did
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    caplog.clear()
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if the extra were not installed
    with caplog.at_level(logging.WARNING, logger="restem.tracking"):
        assert open_tracker(["wandb"], run_dir, {}).active == []
    assert [r.getMessage() for r in caplog.records] == [
        "tracking: wandb is not installed (pip install 'restem[tracking]'); the run goes on "
        "without it"]


def test_a_tracker_that_fails_while_logging_warns_once_and_stops(
        offline: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mlflow import MlflowClient

    run_dir = offline / "run"
    tracker = open_tracker(["mlflow", "tensorboard"], run_dir, {})
    run_id = json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"]
    MlflowClient().delete_run(run_id)  # someone deletes the run while it trains
    with caplog.at_level(logging.WARNING, logger="restem.tracking"):
        for step in range(3):
            with tracker.once(f"step {step}"):  # sends what MLflow has buffered
                tracker.log({"loss": 1.0}, step=step)
        tracker.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "restem.tracking"]
    assert len(warnings) == 1 and warnings[0].startswith("tracking: mlflow failed to log (")
    assert tracker.active == ["tensorboard"]
    state = json.loads((run_dir / "tracking.json").read_text())
    assert state["mlflow"]["logged"] == []  # a resumed run would send it all again
    assert state["tensorboard"]["logged"] == ["step 0", "step 1", "step 2"]


def test_a_run_that_raises_leaves_its_tracker_run_failed(offline: Path) -> None:
    from mlflow import MlflowClient

    run_dir = offline / "run"
    with pytest.raises(KeyboardInterrupt), open_tracker(["mlflow"], run_dir, {}) as tracker:
        tracker.log({"loss": 1.0}, step=1)
        raise KeyboardInterrupt
    run = MlflowClient().get_run(json.loads((run_dir / "tracking.json").read_text())
                                 ["mlflow"]["run_id"])
    assert run.info.status == "FAILED"
    assert [m.value for m in MlflowClient().get_metric_history(run.info.run_id, "loss")] == [1.0]


def test_only_rank_0_touches_the_trackers(offline: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")  # as torchrun sets it
    run_dir = offline / "run"
    with open_tracker(TRACKERS, run_dir, {"name": "t"}) as tracker:
        tracker.log({"loss": 1.0}, step=1)
        with tracker.once("x") as todo:
            assert not todo
    assert tracker.active == [] and not run_dir.exists()


@pytest.mark.slow
def test_restem_run_logs_to_all_three_trackers_and_a_rerun_adds_nothing(
        offline: Path, tiny_model: Path, run_toml: Callable[..., Path]) -> None:
    """A small whole run (the random tiny model solves nothing, so iteration 1 keeps no
    sample and the SFT baseline trains), run twice: the second finds every step done."""
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = offline / "run"  # offline is the tmp_path that run_toml writes in
    config = run_toml(name="tracked", model=str(tiny_model), sft_baseline=True, num_problems=4,
                      val_limit=2, test_limit=2, iterations=1, samples_per_problem=2,
                      max_tokens=16, tracking=["tensorboard", "mlflow", "wandb"],
                      finetune={"max_steps": 2, "micro_batch_size": 2, "max_seq_len": 128})
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "restem_client.cli", "run", "--config",
                               str(config)], cwd=offline, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "tracking:" not in done.stderr  # no tracker warned

    evals = {f"{split}/{name}" for split in ("val", "test")
             for name in ("samples", "accuracy", "pass_at_1")}
    expected = {
        *evals, *(f"sft/{name}" for name in evals),
        *(f"estep/{name}" for name in ("samples", "pass_at_1", "samples_per_s",
                                       "kept_samples")),
        *(f"sft/train/{name}" for name in ("loss", "lr", "grad_norm", "tokens_per_s"))}
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tensorboard = set(events.Tags()["scalars"])
    state = json.loads((run_dir / "tracking.json").read_text())
    run = MlflowClient().get_run(state["mlflow"]["run_id"])
    mlflow = set(run.data.metrics)
    rows = wandb_history(run_dir)
    wandb = set().union(*rows) - {"_step", "_timestamp", "_runtime"}
    print("tensorboard:", " ".join(sorted(tensorboard)))
    print("mlflow:", " ".join(sorted(mlflow)))
    print("wandb:", " ".join(sorted(wandb)))
    assert expected <= tensorboard and tensorboard == mlflow
    for group in ("val", "test", "estep"):  # arith problems have a level
        assert any(re.fullmatch(rf"{group}/level/\d/pass_at_1", n) for n in tensorboard)
    assert wandb == mlflow | {"iteration", "step", "sft/train/step"}  # plus W&B's x-axes
    # Each number once, although the second run visited every step again.
    assert [e.step for e in events.Scalars("val/pass_at_1")] == [0]
    assert [e.step for e in events.Scalars("estep/kept_samples")] == [1]
    assert [e.step for e in events.Scalars("sft/train/loss")] == [1, 2]
    assert [row["sft/train/step"] for row in rows if "sft/train/loss" in row] == [1, 2]
    assert run.info.status == "FINISHED" and run.data.params["tracking"] == json.dumps(
        ["tensorboard", "mlflow", "wandb"])
    assert {f.path for f in MlflowClient().list_artifacts(run.info.run_id)} >= {
        "config.toml", "summary.json", "pass_at_1.png", "sft"}
    assert len({r.run.run_id for r in wandb_records(run_dir)
                if r.WhichOneof("record_type") == "run"}) == 1


@pytest.mark.slow
def test_restem_eval_logs_pass_at_k_and_its_files(offline: Path, tiny_model: Path) -> None:
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = offline / "eval"
    done = subprocess.run([sys.executable, "-m", "restem_client.cli", "eval", "--task", "arith",
                           "--split", "test", "--limit", "2", "-n", "10", "--max-tokens", "8",
                           "--model", str(tiny_model), "--out", str(out),
                           "--tracking", "tensorboard,mlflow,wandb"],
                          cwd=offline, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tracking:" not in done.stderr
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"test/pass_at_1", "test/pass_at_10", "test/samples"} <= set(events.Tags()["scalars"])
    assert [e.value for e in events.Scalars("test/samples")] == [20.0]
    state = json.loads((out / "tracking.json").read_text())
    run = MlflowClient().get_run(state["mlflow"]["run_id"])
    assert set(run.data.metrics) == set(events.Tags()["scalars"])
    assert run.data.params["task"] == "arith" and run.data.params["sampling.n"] == "10"
    assert {f.path for f in MlflowClient().list_artifacts(run.info.run_id)} == {
        "results.json", "samples_results.summary.json", "pass_at_k.png"}
    assert {"test/pass_at_1", "test/pass_at_10"} <= set().union(*wandb_history(out))
