"""Configuration files: a TOML or JSON file, then `key=value` overrides, typed by a dataclass.

One loader serves the loop (`restem run`, `restem_client.restem.RunConfig`) and the trainer
(`python -m restem_client.finetune`, `restem_client.finetune.Config`):

    load_config(RunConfig, "configs/demo.toml", ["iterations=3", "finetune.lr=1e-4"])

A field's type says how a value is read: `str`, `int`, `float` (an integer is accepted),
`bool` (`true`/`false`/`1`/`0` on the command line), `list[str]` (`tracking=a,b` on the
command line), or a table: a `dict` field made with `table(Schema)`, whose keys are typed by
another dataclass's fields and set one by one as `name.key=value`. Unknown keys and values of
the wrong type raise ConfigError naming the key. Each dataclass then checks its own rules in
its `validate()`, which the loader calls last.

`to_toml` writes such a configuration back (the run's `config.toml`, each M-step's
`finetune.toml`); loading what it wrote gives the same dataclass.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Sequence
from dataclasses import Field, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar, get_type_hints


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key or the file."""


class Validated(Protocol):
    def validate(self) -> None:
        """Raise ConfigError naming the key whose value breaks one of the config's rules."""


C = TypeVar("C", bound=Validated)

_TABLE = "restem.config.table"  # the dataclass field metadata key set by table()


def table(schema: type, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Field metadata for a `dict` field holding a table of `schema`'s fields (less `exclude`):
    `finetune: dict[str, Any] = field(default_factory=dict, metadata=table(Config))`."""
    return {_TABLE: (schema, tuple(exclude))}


def load_config(cls: type[C], path: str | Path | None, overrides: Sequence[str] = ()) -> C:
    """`cls` from a TOML file (JSON where the name ends in .json), then each `key=value` of
    `overrides`, checked against the field types, then against `cls`'s own rules."""
    kinds = _kinds(cls)
    values = _checked(_read_file(Path(path)), kinds) if path else {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        name, dot, sub = key.partition(".")
        kind = kinds.get(name)
        if isinstance(kind, dict):
            if not dot:
                raise ConfigError(f"config: {name} is a table; set its keys as "
                                  f"{name}.KEY=value")
            if sub not in kind:
                raise ConfigError(f"unknown config key {key!r}")
            values.setdefault(name, {})[sub] = _parse(key, raw, kind[sub])
        elif kind is None or dot:
            raise ConfigError(f"unknown config key {key!r}")
        else:
            values[key] = _parse(key, raw, kind)
    config = cls(**values)
    config.validate()
    return config


def _read_file(path: Path) -> dict[str, Any]:
    """A config file's keys, untyped; a file that cannot be read or parsed is a ConfigError."""
    try:
        text = path.read_text()
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ConfigError(f"config file {path}: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected an object of keys, not "
                          f"{type(values).__name__}")
    return values


def to_toml(values: dict[str, Any]) -> str:
    """TOML for a configuration: keys and values (strings, numbers, booleans, lists of
    those) first, then each nested dict as a `[table]`."""
    return _toml_body(values, ())


# ----------------------------------------------------------------------------- types

Kinds = dict[str, Any]  # field name -> its type, or the Kinds of a table field


def _kinds(cls: type, exclude: Sequence[str] = ()) -> Kinds:
    hints = get_type_hints(cls)
    kinds: Kinds = {}
    for f in fields(cls):
        if f.name not in exclude:
            kinds[f.name] = _table_kinds(f) if _TABLE in f.metadata else hints[f.name]
    return kinds


def _table_kinds(f: Field) -> Kinds:
    schema, exclude = f.metadata[_TABLE]
    return _kinds(schema, exclude)


def _parse(key: str, raw: str, kind: Any) -> Any:
    """An override's text as a value of `kind`."""
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if kind == list[str]:
            return [item for item in raw.split(",") if item]
        return {int: int, float: float, str: str}[kind](raw)
    except (KeyError, ValueError):
        raise ConfigError(f"config: {key}={raw!r} is not a valid {_name(kind)}") from None


def _checked(values: dict[str, Any], kinds: Kinds, prefix: str = "") -> dict[str, Any]:
    """`values` with every key known and every value of its field's type (an int where a
    float is expected becomes a float)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = prefix + name
        if name not in kinds:
            raise ConfigError(f"unknown config key {key!r}")
        kind = kinds[name]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config: {key}={value!r} is not a valid table")
            out[name] = _checked(value, kind, f"{key}.")
        elif kind is float and type(value) is int:
            out[name] = float(value)
        elif not _is(value, kind):
            raise ConfigError(f"config: {key}={value!r} is not a valid {_name(kind)}")
        else:
            out[name] = value
    return out


def _is(value: Any, kind: Any) -> bool:
    if kind == list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return type(value) is kind  # exact, so that a bool is not taken for an int


def _name(kind: Any) -> str:
    return kind.__name__ if isinstance(kind, type) else str(kind)


# ----------------------------------------------------------------------------- TOML

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_body(values: dict[str, Any], path: tuple[str, ...]) -> str:
    lines, tables = [], []
    for key, value in values.items():
        if isinstance(value, dict):
            header = ".".join(_toml_key(k) for k in (*path, key))
            tables.append(f"\n[{header}]\n" + _toml_body(value, (*path, key)))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n" + "".join(tables)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"to_toml: no TOML form for {type(value).__name__} {value!r}")


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, but TOML also forbids a raw DEL (U+007F) in a basic string.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
