"""The run directory of `restem run`, named once: every path the loop, its reports and the
reward audit read or write is a property here (the tree is drawn in restem.py's docstring).

    layout = RunLayout(Path("runs/math"))
    layout.step("iter_2").kept            # runs/math/iter_2/train.jsonl
    layout.step("base").eval("test")      # runs/math/base/eval/test/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StepLayout:
    """One step's directory: base, sft or iter_<i>."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def generate(self) -> Path:
        """The E-step's merged samples and verdicts (evals.evaluate's output)."""
        return self.root / "generate"

    @property
    def generate_results(self) -> Path:
        return self.generate / "results.json"

    @property
    def sample_verdicts(self) -> Path:
        return self.generate / "samples_results.jsonl"

    @property
    def shards(self) -> Path:
        """The E-step while it runs, kept across a restart."""
        return self.root / "shards"

    @property
    def kept(self) -> Path:
        """The solutions the M-step trains on."""
        return self.root / "train.jsonl"

    @property
    def audit(self) -> Path:
        return self.root / "audit.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"

    @property
    def finetune_config(self) -> Path:
        return self.root / "finetune.toml"

    def eval(self, split: str) -> Path:
        """An evaluation's output: val, test, or a transfer task's directory name."""
        return self.root / "eval" / split

    def eval_shards(self, split: str) -> Path:
        return self.root / "eval" / f"{split}.shards"

    def eval_results(self, split: str) -> Path:
        return self.eval(split) / "results.json"


@dataclass(frozen=True)
class RunLayout:
    """A run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def plot(self) -> Path:
        return self.root / "pass_at_1.png"

    @property
    def ray_train(self) -> Path:
        """Ray Train's storage for the M-steps on a cluster."""
        return self.root / "ray_train"

    def step(self, name: str) -> StepLayout:
        return StepLayout(self.root / name)

    def iteration(self, i: int) -> StepLayout:
        return self.step(f"iter_{i}")

    def kept_sets(self) -> list[Path]:
        """Every step's train.jsonl, for the trackers' files."""
        return sorted(self.root.glob("*/train.jsonl"))


def transfer_split(task: str) -> str:
    """The eval directory of a transfer task under <step>/eval/ (`bbh/navigate`:
    bbh-navigate)."""
    return task.replace("/", "-")
