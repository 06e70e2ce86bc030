"""restem_client.config: TOML and JSON files, `key=value` overrides of every kind (scalars,
lists of strings, a nested table's keys), unknown keys and wrong types named in the error,
the dataclass's own rules checked last, and the TOML writer read back to the same config."""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from restem_client.config import ConfigError, load_config, table, to_toml
from restem_client.finetune import Config
from restem_client.restem import RunConfig


@dataclass
class Optimizer:
    name: str = "adamw"  # set by the program, not by a config (excluded below)
    lr: float = 1e-3
    fused: bool = False


@dataclass
class Settings:
    title: str = "run"
    epochs: int = 1
    scale: float = 1.0
    verbose: bool = False
    tags: list[str] = field(default_factory=list)
    optimizer: dict[str, Any] = field(default_factory=dict,
                                      metadata=table(Optimizer, exclude=("name",)))

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError("config key 'epochs' must be at least 1")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_overrides_of_every_kind_are_typed_by_the_fields() -> None:
    config = load_config(Settings, None, [
        "title=a=b", "epochs=3", "scale=2.5e-1", "verbose=true", "tags=x,y,", "optimizer.lr=1e-4",
        "optimizer.fused=1"])
    assert config == Settings(title="a=b", epochs=3, scale=0.25, verbose=True, tags=["x", "y"],
                              optimizer={"lr": 1e-4, "fused": True})
    assert load_config(Settings, None, ["verbose=FALSE", "verbose=0", "tags="]) == Settings()
    assert load_config(Settings, None, ["scale=7"]).scale == 7.0  # an int for a float


def test_a_toml_file_then_overrides_and_a_json_file_alike(tmp_path: Path) -> None:
    toml = write(tmp_path / "s.toml", 'epochs = 2\nscale = 3\ntags = ["a"]\n\n'
                                      '[optimizer]\nlr = 0.5\n')
    config = load_config(Settings, toml, ["optimizer.fused=true", "epochs=4"])
    # The override adds to the file's table and replaces its scalar; 3 is read as 3.0.
    assert config == Settings(epochs=4, scale=3.0, tags=["a"],
                              optimizer={"lr": 0.5, "fused": True})
    assert type(config.scale) is float
    values = {"epochs": 2, "scale": 3, "tags": ["a"], "optimizer": {"lr": 0.5}}
    json_file = write(tmp_path / "s.json", json.dumps(values))
    assert load_config(Settings, json_file) == load_config(Settings, toml)


@pytest.mark.parametrize("text, overrides, message", [
    ("colour = 1\n", [], "unknown config key 'colour'"),
    ("[optimizer]\nmomentum = 0.9\n", [], "unknown config key 'optimizer.momentum'"),
    ("[optimizer]\nname = 'sgd'\n", [], "unknown config key 'optimizer.name'"),  # excluded
    ("", ["colour=red"], "unknown config key 'colour'"),
    ("", ["optimizer.momentum=0.9"], "unknown config key 'optimizer.momentum'"),
    ("", ["epochs.x=1"], "unknown config key 'epochs.x'"),
    ("", ["optimizer=fast"],
     "config: optimizer is a table; set its keys as optimizer.KEY=value"),
    ("", ["epochs"], "override 'epochs' is not key=value"),
])
def test_unknown_keys_are_named(tmp_path: Path, text: str, overrides: list[str],
                                message: str) -> None:
    path = write(tmp_path / "s.toml", text)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_config(Settings, path, overrides)


@pytest.mark.parametrize("text, overrides, message", [
    ('scale = "big"\n', [], "config: scale='big' is not a valid float"),
    ("epochs = 2.5\n", [], "config: epochs=2.5 is not a valid int"),
    ("epochs = true\n", [], "config: epochs=True is not a valid int"),  # a bool is no int
    ("verbose = 1\n", [], "config: verbose=1 is not a valid bool"),
    ('tags = "a,b"\n', [], "config: tags='a,b' is not a valid list[str]"),
    ("tags = [1]\n", [], "config: tags=[1] is not a valid list[str]"),
    ("optimizer = 3\n", [], "config: optimizer=3 is not a valid table"),
    ('[optimizer]\nlr = "x"\n', [], "config: optimizer.lr='x' is not a valid float"),
    ("", ["epochs=two"], "config: epochs='two' is not a valid int"),
    ("", ["verbose=yes"], "config: verbose='yes' is not a valid bool"),
    ("", ["optimizer.lr=fast"], "config: optimizer.lr='fast' is not a valid float"),
])
def test_values_of_the_wrong_type_are_named(tmp_path: Path, text: str, overrides: list[str],
                                            message: str) -> None:
    path = write(tmp_path / "s.toml", text)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_config(Settings, path, overrides)


def test_files_that_cannot_be_read_name_the_file(tmp_path: Path) -> None:
    for path, message in (
            (tmp_path / "missing.toml", "No such file"),
            (write(tmp_path / "bad.toml", "epochs = \n"), "Invalid value"),
            (write(tmp_path / "bad.json", "{'epochs': 1}"), "Expecting property name"),
            (write(tmp_path / "list.json", "[1]"), "expected an object of keys, not list")):
        with pytest.raises(ConfigError, match=f"^config file {re.escape(str(path))}: .*{message}"):
            load_config(Settings, path)


def test_the_dataclass_checks_its_own_rules_last() -> None:
    with pytest.raises(ConfigError, match=r"^config key 'epochs' must be at least 1$"):
        load_config(Settings, None, ["epochs=0"])


def test_what_the_writer_writes_loads_back_to_the_same_config(tmp_path: Path) -> None:
    tricky = Settings(title='quote " back\\ tab\t nl\n del\x7f é 😀', epochs=7, scale=-math.inf,
                      verbose=True, tags=["", "a b", "ü"],
                      optimizer={"lr": 1e-05, "fused": False})
    for config in (tricky, Settings(scale=math.inf)):
        path = write(tmp_path / "s.toml", to_toml(asdict(config)))
        assert load_config(Settings, path) == config
    nan = tomllib.loads(to_toml({"scale": math.nan}))["scale"]
    assert math.isnan(nan)
    # The loop's own config, with its table and its list, and the trainer's.
    run = RunConfig(name="r", tracking=["tensorboard"], temperature=1.0,
                    finetune={"lr": 5e-05, "epochs": 2, "activation_checkpointing": True})
    path = write(tmp_path / "run.toml", to_toml(asdict(run)))
    assert load_config(RunConfig, path) == run
    recipe = Config(model="m", data="d.jsonl", out="o", lr=3e-4)
    path = write(tmp_path / "c.toml", to_toml(asdict(recipe)))
    assert load_config(Config, path) == recipe
    # The trainer saves its config as JSON beside the checkpoint: a file to train from again.
    path = write(tmp_path / "restem-finetune.json", json.dumps(asdict(recipe)))
    assert load_config(Config, path) == recipe


def test_the_writer_keeps_the_format_of_existing_run_directories() -> None:
    # config.toml files written before this module existed compare equal after a resume.
    values = {"name": "demo", "chat": True, "lr": 5e-05, "gpu": 0.0, "tracking": [],
              "finetune": {"epochs": 2, "out": "runs/x"}}
    assert to_toml(values) == ('name = "demo"\nchat = true\nlr = 5e-05\ngpu = 0.0\n'
                               'tracking = []\n\n[finetune]\nepochs = 2\nout = "runs/x"\n')
    assert to_toml({"a b": {"c.d": 1}}) == '\n\n["a b"]\n"c.d" = 1\n'
    with pytest.raises(TypeError, match="no TOML form for NoneType"):
        to_toml({"x": None})


def test_the_run_config_types_its_finetune_table_by_the_trainer_keys() -> None:
    config = load_config(RunConfig, None, ["finetune.lr=1e-4", "finetune.epochs=2",
                                           "tracking=tensorboard,mlflow"])
    assert config.finetune == {"lr": 1e-4, "epochs": 2}
    assert config.tracking == ["tensorboard", "mlflow"]
    # model, data, out and seed are the loop's to set for each M-step (the seed is the run's:
    # a finetune.seed would be overwritten, so it fails at start instead)
    for key in ("model", "data", "out", "seed"):
        with pytest.raises(ConfigError, match=rf"^unknown config key 'finetune\.{key}'$"):
            load_config(RunConfig, None, [f"finetune.{key}=1"])
