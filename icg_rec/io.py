"""Atomic file writes, verified multi-file folders and safetensors/JSON checkpoints.

A reader never sees a half-written file, and a folder written by `write_folder` carries a MANIFEST.json
of sha256 per file that `verify_folder` checks before anything is built from it.
"""

import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from icg_rec.errors import CheckpointError

T = TypeVar("T")

MANIFEST = "MANIFEST.json"  # the file list + sha256 that write_folder adds to a folder
_CHUNK = 1 << 20  # bytes read at a time when hashing


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls `write(tmp_path)` and renames the temporary file onto `path`.

    The temporary file is created like `open(path, "w")` creates a new file: mode 0o666 less the
    process umask, so covers and manifests meant for serving get the usual permissions.

    Args:
        path: final destination; its parent folder is created.
        write: writes the whole file to the temporary path it is given.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as for open()
    mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        write(tmp)
        if stat.S_IMODE(tmp.stat().st_mode) != mode:  # the writer replaced the file (safetensors: 0o600)
            tmp.chmod(mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(folder: str | Path, exclude: Sequence[str] = ()) -> dict[str, str]:
    """sha256 of every file under `folder` (recursively), keyed by its POSIX path relative to `folder`.

    Args:
        folder: the folder to hash.
        exclude: relative paths to leave out.

    Returns:
        {relative path: sha256}, sorted by path.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {rel: file_sha256(p) for p in files if (rel := p.relative_to(folder).as_posix()) not in exclude}


def write_folder(folder: str | Path, write: Callable[[Path], None]) -> dict[str, str]:
    """Writes a multi-file artifact atomically: `write(tmp)` fills a temporary sibling folder, a
    MANIFEST.json of sha256 per file is added, then the folder is renamed into place.

    An older folder of the same name is replaced only after the new one is complete; a failure in
    `write` removes the temporary folder and leaves the older one as it was, and a writer that was killed
    leaves one that the next `write_folder` of the same name deletes (temporary names carry the pid). Folders get mode 0o777 and
    files 0o666 less the umask, as `mkdir` and `open` would make them, whatever the writers chose
    (safetensors writes 0o600).

    Args:
        folder: final destination; its parent is created.
        write: fills the (empty) temporary folder it is given.

    Returns:
        {relative path: sha256} of the files written (MANIFEST.json excluded).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(folder)
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    tmp.mkdir(mode=0o777)  # the umask applies (mkdtemp would make it 0o700)
    try:
        write(tmp)
        _umask_modes(tmp)
        hashes = hash_files(tmp, exclude=[MANIFEST])
        (tmp / MANIFEST).write_text(json.dumps({"files": hashes}, indent=2) + "\n")
        old = None
        if folder.exists():
            old = Path(
                tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.{os.getpid()}.", suffix=".old")
            )
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return hashes


def _remove_abandoned(folder: Path) -> None:
    """Deletes temporary siblings of `folder` left by writers that were killed (their process is gone);
    if one died between moving the older folder aside and renaming the new one in, the older one returns."""
    pattern = re.compile(rf"\.{re.escape(folder.name)}\.(\d+)\.([0-9a-f]{{12}}\.tmp|[a-z0-9_]{{8}}\.old)")
    for path in folder.parent.glob(f".{glob.escape(folder.name)}.*"):
        if (match := pattern.fullmatch(path.name)) and not _alive(int(match.group(1))):
            if path.suffix == ".old" and not folder.exists() and (path / folder.name).is_dir():
                os.replace(path / folder.name, folder)  # killed between its two renames: the old one returns
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _umask_modes(folder: Path) -> None:
    """Gives every folder under `folder` the mode of `folder` (made by mkdir) and every file that less x bits."""
    folder_mode = stat.S_IMODE(folder.stat().st_mode)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(folder_mode if path.is_dir() else folder_mode & 0o666)


def verify_folder(folder: str | Path, required: Sequence[str] = ()) -> dict[str, str]:
    """Checks a folder written by `write_folder` against its MANIFEST.json, before anything reads it.

    Args:
        folder: the folder to check.
        required: relative paths the reader needs; each must be listed in the manifest.

    Returns:
        {relative path: sha256} from the manifest.

    Raises:
        CheckpointError: naming the folder and the first file that is missing, not in the manifest
            although required, or whose bytes do not hash to the manifest's record; or a missing or
            unreadable MANIFEST.json.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"no folder at {folder}")
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise CheckpointError(
            f"{folder} has no {MANIFEST}: it was not written by write_folder, or not completely"
        )
    try:
        hashes = json.loads(manifest.read_bytes().decode("utf-8"))["files"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{manifest} is unreadable: {err!r}") from err
    if not isinstance(hashes, dict):
        raise CheckpointError(f"{manifest} is unreadable: 'files' is not a mapping")
    if outside := [rel for rel in hashes if Path(rel).is_absolute() or ".." in Path(rel).parts]:
        raise CheckpointError(f"{manifest} lists file {outside[0]!r} outside its folder")
    if missing := [name for name in required if name not in hashes]:
        raise CheckpointError(
            f"{folder} lacks required file {missing[0]!r} (its {MANIFEST} lists {sorted(hashes)})"
        )
    for rel, expected in hashes.items():
        path = folder / rel
        if not path.is_file():
            raise CheckpointError(f"{folder}: file {rel!r} listed in {MANIFEST} is missing")
        if file_sha256(path) != expected:
            raise CheckpointError(
                f"{folder}: file {rel!r} does not match its sha256 in {MANIFEST} (changed or truncated)"
            )
    return hashes


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
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path} is corrupt: not UTF-8 text ({err})") from err
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
