"""Nested dataclass configs to and from TOML: one table per nested dataclass, unknown keys refused."""

import copy
import json
import math
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from icg_rec.errors import CheckpointError

T = TypeVar("T")


def to_toml(config: Any, skip_nested: tuple[str, ...] = ()) -> str:
    """A dataclass (with nested dataclass fields) as TOML text; None fields are left out.

    Args:
        config: a dataclass instance; values are bool, int, float, str, lists, dicts of scalars,
            nested dataclasses or None.
        skip_nested: field names left out of every nested table (e.g. seeds set from the top level).

    Returns:
        TOML text that `override(type(config)(), tomllib.loads(text))` reads back to an equal config,
        as long as every field left out (None) is None by default.
    """
    lines: list[str] = []
    _table(config, [], lines, skip_nested)
    return "\n".join(lines).strip() + "\n"


def override(config: T, values: dict[str, Any], source: str = "config") -> T:
    """A copy of `config` with the keys of `values` set, recursing into nested dataclass fields.

    Args:
        config: the base (e.g. a preset).
        values: parsed TOML; a table sets the fields of a nested dataclass, other keys replace values.
        source: named in errors (a file, or a table of it).

    Returns:
        The new config; `config` is left unchanged.

    Raises:
        CheckpointError: an unknown key (typo) or a table where a value is expected, named with `source`.
    """
    config = copy.deepcopy(config)
    _set(config, values, source)
    return config


def load_toml(path: str | Path) -> dict[str, Any]:
    """Reads a TOML file, raising CheckpointError naming the file when it is missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no TOML file at {path}")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise CheckpointError(f"{path} is not valid TOML: {err}") from err


def _set(config: Any, values: dict[str, Any], source: str) -> None:
    known = {f.name: f for f in fields(config)}
    for key, value in values.items():
        if key not in known:
            raise CheckpointError(
                f"{source} has unknown key {key!r} for {type(config).__name__}; known: {sorted(known)}"
            )
        current = getattr(config, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise CheckpointError(f"{source}: {key} must be a table of {type(current).__name__} fields")
            _set(current, value, f"{source} [{key}]")
        else:
            setattr(config, key, value)


def _table(config: Any, path: list[str], lines: list[str], skip_nested: tuple[str, ...]) -> None:
    nested = []
    scalars = []
    for f in fields(config):
        value = getattr(config, f.name)
        if path and f.name in skip_nested:
            continue
        if is_dataclass(value):
            nested.append((f.name, value))
        elif value is not None:
            scalars.append(f"{f.name} = {_value(value)}")
    if path and (scalars or not nested):
        lines += ["", f"[{'.'.join(path)}]"]
    lines += scalars
    for name, value in nested:
        _table(value, [*path, name], lines, skip_nested)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
