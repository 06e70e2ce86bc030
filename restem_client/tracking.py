"""Experiment tracking: a run's parameters, metrics and files sent to TensorBoard, MLflow and
Weights & Biases (any subset), through one small API that every entry point uses:

    tracker = open_tracker(["tensorboard", "wandb"], run_dir, config, name="demo")
    tracker.log({"train/loss": 0.71, "train/lr": 1e-5}, step=10)
    tracker.close(artifacts=[run_dir / "summary.json"])

Rules:
- Optional: a library is imported only when its tracker is asked for
  (`pip install 'restem[tracking]'`).
- Never fatal: a tracker that cannot start (not installed, no server, no W&B key) logs one
  warning line and is left out; one that fails later logs one warning line and stops. The
  numbers are in the run directory either way.
- Rank 0 only: where torchrun's RANK is not 0, open_tracker returns a tracker that does nothing
  and touches no library or file.
- Resumable: the tracker runs' ids live in <run_dir>/tracking.json, so opening the same run
  directory again appends to the same tracker runs. `once(key)` sends a group of numbers to
  each tracker that has not had it yet (a resumed run replays nothing twice, and a tracker
  added later is sent everything).
- One name per metric in every tracker: MLflow allows letters, digits, `_ - . : /` and
  spaces, so `@` becomes `_at_` (`pass@1` -> `pass_at_1`) and any other character `_`.

Where each tracker writes:
    tensorboard  <run_dir>/tensorboard/ (`tensorboard --logdir runs`)
    mlflow       $MLFLOW_TRACKING_URI, else MLflow's default (sqlite:///mlflow.db in the
                 working directory); experiment $MLFLOW_EXPERIMENT_NAME, else "restem"
    wandb        project $WANDB_PROJECT, else "restem"; local files under $WANDB_DIR, else
                 <run_dir>; WANDB_MODE=offline works without network (`wandb sync` later)
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evals.report import write_atomic

TRACKERS = ("tensorboard", "mlflow", "wandb")
STATE_FILE = "tracking.json"
log = logging.getLogger("restem.tracking")
_NOT_INSTALLED = "not installed (pip install 'restem[tracking]')"


def check_trackers(names: object) -> list[str]:
    """The tracker names, checked: a list drawn from TRACKERS (ValueError otherwise)."""
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"expected a list of tracker names from {list(TRACKERS)}, not "
                         f"{names!r}")
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r} (expected any of {list(TRACKERS)})")
    return list(dict.fromkeys(names))


def metric_name(name: str) -> str:
    """The name every tracker accepts (see the module docstring)."""
    return re.sub(r"[^\w./\- :]", "_", name.replace("@", "_at_"))


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested tables as dotted keys (`finetune.lr`), values as text."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if not isinstance(value, str) else value
    return out


def open_tracker(names: Iterable[str], run_dir: Path, config: Mapping[str, Any], *,
                 name: str | None = None, resume: bool = True) -> Tracker:
    """Start (or, with `resume` and a tracking.json from before, continue) one tracker run
    per name. `config` is logged as the run's parameters when a tracker run is created."""
    names = check_trackers(list(names))
    if not names or int(os.environ.get("RANK", "0")) != 0:
        return Tracker([], run_dir, {})
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / STATE_FILE
    saved: dict[str, Any] = json.loads(path.read_text()) if resume and path.exists() else {}
    backends: list[_Backend] = []
    for tracker in names:
        state = saved.setdefault(tracker, {})
        try:
            backends.append(_BACKENDS[tracker](run_dir, name or run_dir.name, config, state))
        except ImportError:
            log.warning("tracking: %s is %s; the run goes on without it", tracker,
                        _NOT_INSTALLED)
        except Exception as exc:  # a tracker never stops the run
            log.warning("tracking: %s did not start (%s); the run goes on without it",
                        tracker, _one_line(exc))
    tracker = Tracker(backends, run_dir, saved)
    tracker.save()
    return tracker


class Tracker:
    """Sends metrics to the trackers that started; does nothing when none did."""

    def __init__(self, backends: list[_Backend], run_dir: Path, state: dict[str, Any]) -> None:
        self._backends = backends
        self._sending = backends  # narrowed inside once()
        self._run_dir = run_dir
        self._state = state
        self._closed = False

    @property
    def active(self) -> list[str]:
        """The names of the trackers that are logging."""
        return [b.name for b in self._backends]

    def log(self, metrics: Mapping[str, float | int | None], step: int, *,
            axis: str = "step") -> None:
        """Scalars at `step`; None values are left out. `axis` names the step's meaning for
        trackers with one step counter per run (W&B plots these metrics against it)."""
        values = {metric_name(k): float(v) for k, v in metrics.items() if v is not None}
        if not values:
            return
        for backend in list(self._sending):
            self._guard(backend, "log", backend.log, values, step, metric_name(axis))

    @contextmanager
    def once(self, key: str) -> Iterator[bool]:
        """Inside the block, log() reaches only the trackers that have not had `key`; yields
        whether there is any. When the block ends without an error, they have it (recorded in
        tracking.json)."""
        pending = [b for b in self._backends if key not in b.state.setdefault("logged", [])]
        self._sending = pending
        try:
            yield bool(pending)
        finally:
            self._sending = self._backends
        for backend in pending:
            if backend in self._backends:  # not dropped by a failure in the block
                self._guard(backend, "log", backend.flush)
            if backend in self._backends:  # nor by one while flushing
                backend.state["logged"].append(key)
        if pending:
            self.save()

    def close(self, artifacts: Iterable[Path] = (), *, failed: bool = False) -> None:
        """Attach the files that exist (paths relative to the run directory where they are
        under it) and finish every tracker run; `failed` marks the run as failed."""
        if self._closed:
            return
        self._closed = True
        files = [Path(p) for p in artifacts if Path(p).is_file()]
        for backend in list(self._backends):
            self._guard(backend, "finish", backend.close, files, self._run_dir, failed)
        self.save()

    def save(self) -> None:
        if not self._state:
            return
        write_atomic(self._run_dir / STATE_FILE, json.dumps(self._state, indent=2) + "\n")

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close(failed=kind is not None)  # after a successful close() this does nothing

    def _guard(self, backend: _Backend, doing: str, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except Exception as exc:  # a tracker never stops the run
            log.warning("tracking: %s failed to %s (%s); it stops, the numbers stay in %s",
                        backend.name, doing, _one_line(exc), self._run_dir)
            self._backends = [b for b in self._backends if b is not backend]
            self._sending = [b for b in self._sending if b is not backend]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:240]}"


def _relative(path: Path, base: Path) -> Path:
    try:
        return path.resolve().relative_to(base.resolve())
    except ValueError:
        return Path(path.name)


# ----------------------------------------------------------------------------- backends


class _Backend:
    """One tracker run. `state` is this tracker's entry of tracking.json, kept up to date."""

    name = ""

    def __init__(self, run_dir: Path, run_name: str, config: Mapping[str, Any],
                 state: dict[str, Any]) -> None:
        self.state = state

    def log(self, values: dict[str, float], step: int, axis: str) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Make what was logged durable before once() records it."""

    def close(self, files: list[Path], run_dir: Path, failed: bool) -> None:
        raise NotImplementedError


class _TensorBoard(_Backend):
    """Event files in <run_dir>/tensorboard; a resumed run adds event files beside the old
    ones, which TensorBoard reads as one run. Text files among the artifacts go in as text."""

    name = "tensorboard"
    TEXT_LIMIT = 64 * 1024

    def __init__(self, run_dir: Path, run_name: str, config: Mapping[str, Any],
                 state: dict[str, Any]) -> None:
        super().__init__(run_dir, run_name, config, state)
        from torch.utils.tensorboard import SummaryWriter

        log_dir = run_dir / "tensorboard"
        new = "logged" not in state
        if new:  # no events from an earlier tracker run in this directory
            for old in log_dir.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(str(log_dir))
        if new:
            lines = "\n".join(f"{k} = {v}" for k, v in flat_params(config).items())
            self.writer.add_text("config", f"```\n{lines}\n```", 0)
            state["logged"] = []

    def log(self, values: dict[str, float], step: int, axis: str) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, files: list[Path], run_dir: Path, failed: bool) -> None:
        for path in files:
            if path.suffix in (".json", ".toml", ".txt") and \
                    path.stat().st_size <= self.TEXT_LIMIT:
                self.writer.add_text(f"artifacts/{_relative(path, run_dir)}",
                                     f"```\n{path.read_text()}\n```", 0)
        self.writer.close()


class _MLflow(_Backend):
    """One MLflow run; its id and the tracking URI are kept, and a resumed run continues it
    when the URI is the same (otherwise a new run gets everything). Metrics are sent in
    batches, at most EVERY_S seconds late: one call per step cost 20 ms in a SQLite store
    (14 ms with MLflow's asynchronous logging), one call of 1,000 metrics about as much."""

    name = "mlflow"
    BATCH = 1000  # MLflow's limit of metrics per log_batch call
    EVERY_S = 5.0
    PARAM_BATCH = 100

    def __init__(self, run_dir: Path, run_name: str, config: Mapping[str, Any],
                 state: dict[str, Any]) -> None:
        super().__init__(run_dir, run_name, config, state)
        import mlflow
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        uri = mlflow.get_tracking_uri()
        if uri.startswith(("http://", "https://")):
            _check_server(uri)
        self.client = mlflow.MlflowClient(uri)
        run_id = state.get("run_id") if state.get("tracking_uri") == uri else None
        if run_id:
            try:
                self.client.update_run(run_id, status="RUNNING")
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                run_id = None
        if not run_id:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "restem"
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else \
                self.client.create_experiment(experiment)
            run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
            params = [Param(k, v[:6000]) for k, v in flat_params(config).items()]
            for first in range(0, len(params), self.PARAM_BATCH):
                self.client.log_batch(run_id, params=params[first:first + self.PARAM_BATCH])
            state.clear()
            state.update(run_id=run_id, tracking_uri=uri, logged=[])
        self.run_id = run_id
        self.pending: list[Any] = []  # metrics not sent yet
        self.sent = time.monotonic()

    def log(self, values: dict[str, float], step: int, axis: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, step) for k, v in values.items()]
        if len(self.pending) >= self.BATCH or time.monotonic() - self.sent >= self.EVERY_S:
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for first in range(0, len(pending), self.BATCH):
            self.client.log_batch(self.run_id, metrics=pending[first:first + self.BATCH])
        self.sent = time.monotonic()

    def close(self, files: list[Path], run_dir: Path, failed: bool) -> None:
        self.flush()
        for path in files:
            folder = _relative(path, run_dir).parent
            self.client.log_artifact(self.run_id, str(path),
                                     str(folder) if folder != Path() else None)
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


def _check_server(uri: str, timeout_s: float = 10.0) -> None:
    """MLflow retries a server that does not answer for minutes, without a word (over 4 min
    measured with its defaults): ask once, briefly. Any HTTP answer will do."""
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
    except requests.RequestException as exc:
        raise RuntimeError(f"no MLflow server answered at {uri} within {timeout_s:.0f} s "
                           f"({type(exc).__name__})") from None


class _WandB(_Backend):
    """One W&B run, resumed by its id. Each metric is plotted against its `axis` (W&B's
    define_metric), and W&B's own step counter continues across resumes (kept in
    tracking.json, since an offline run cannot ask the server where it stopped)."""

    name = "wandb"

    def __init__(self, run_dir: Path, run_name: str, config: Mapping[str, Any],
                 state: dict[str, Any]) -> None:
        super().__init__(run_dir, run_name, config, state)
        import wandb

        # Without a key, wandb.init would prompt at a terminal and wait for an answer.
        if wandb.setup().settings.mode not in ("offline", "dryrun", "disabled") and \
                not wandb.login(prompt=False, verify=False):
            raise RuntimeError("no W&B API key (wandb login, $WANDB_API_KEY, or "
                               "WANDB_MODE=offline)")
        project = os.environ.get("WANDB_PROJECT") or "restem"
        if state.get("project") != project or "id" not in state:
            state.clear()  # a new W&B run, with the parameters
            state.update(project=project, step=0, logged=[])
        local = Path(os.environ.get("WANDB_DIR") or run_dir)
        local.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, name=run_name, id=state.get("id"),
                              resume="allow", config=None if "id" in state else dict(config),
                              dir=str(local))
        state["id"] = self.run.id
        self.step = max(state["step"], self.run.step)
        self.defined: set[str] = set()  # axes and metrics told to W&B in this process

    def log(self, values: dict[str, float], step: int, axis: str) -> None:
        if axis not in self.defined:
            self.run.define_metric(axis)
            self.defined.add(axis)
        for key in values.keys() - self.defined:
            self.run.define_metric(key, step_metric=axis)
            self.defined.add(key)
        self.run.log({**values, axis: step}, step=self.step)
        self.step += 1
        self.state["step"] = self.step

    def close(self, files: list[Path], run_dir: Path, failed: bool) -> None:
        for path in files:
            base = run_dir if path.resolve().is_relative_to(run_dir.resolve()) else path.parent
            self.run.save(str(path), base_path=str(base), policy="now")
        self.run.finish(exit_code=1 if failed else 0)


_BACKENDS: dict[str, type[_Backend]] = {"tensorboard": _TensorBoard, "mlflow": _MLflow,
                                        "wandb": _WandB}
