"""Atomic file writes and safetensors/JSON checkpoints: a reader never sees a half-written file."""

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from icg_rec.errors import CheckpointError

T = TypeVar("T")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls `write(tmp_path)` and renames the temporary file onto `path`.

    Args:
        path: final destination; its parent folder is created.
        write: writes the whole file to the temporary path it is given.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Writes `obj` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def _json_default(obj: Any) -> Any:
    if is_dataclass(obj):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Saves tensors as safetensors, atomically (contiguous CPU copies)."""
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(cpu, str(tmp)))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Loads a safetensors file, raising CheckpointError that names the file if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"weights file {path} is unreadable or truncated: {err}") from err


def read_json(path: str | Path) -> Any:
    """Reads a JSON file, raising CheckpointError that names the file if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no JSON file at {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err


def config_from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Builds dataclass `cls` from a dict, refusing unknown keys (typos) by name."""
    known = {f.name for f in fields(cls)}
    if unknown := sorted(set(values) - known):
        raise CheckpointError(
            f"{source} has unknown key(s) {unknown} for {cls.__name__}; known: {sorted(known)}"
        )
    return cls(**values)


def load_toml_config(cls: type[T], path: str | Path, section: str | None = None) -> T:
    """Reads dataclass `cls` from a TOML file (optionally one [section] of it)."""
    import tomllib

    path = Path(path)
    with path.open("rb") as fh:
        values = tomllib.load(fh)
    if section is not None:
        if section not in values:
            raise CheckpointError(f"{path} has no [{section}] section; sections: {sorted(values)}")
        values = values[section]
    return config_from_dict(cls, values, source=str(path))


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """`module.load_state_dict(state)`, raising CheckpointError naming `source` when the shapes or keys differ."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{source} does not match this {type(module).__name__}: {err}") from err


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a flat state dict under `prefix.`, with the prefix removed."""
    return {key[len(prefix) + 1 :]: value for key, value in state.items() if key.startswith(f"{prefix}.")}
