"""Local Hugging Face checkpoint folders: existence checks and a content version for cache keys."""

import functools
import hashlib
from pathlib import Path

from icg_rec.errors import CheckpointError

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")


@functools.cache
def checkpoint_version(folder: Path, extra: str = "") -> str:
    """First 12 hex digits of sha256 over config.json, the weight files and `extra` (preprocessing).

    Computed once per process and folder: a checkpoint rewritten in place while the process runs
    keeps its old version.
    """
    digest = hashlib.sha256(extra.encode())
    files = [folder / "config.json"] + sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]


def require_hf_folder(path: str | Path) -> Path:
    """`path` as a Path, or CheckpointError if it is not a folder holding a config.json and weights.

    Checked before anything is built: transformers given a folder without config.json may build its
    default configuration (a 7B Llama), and without weights it initialises the model at random.
    """
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{folder} is not a local Hugging Face checkpoint folder (no config.json); "
            "expected a folder written by save_pretrained (nothing is downloaded)"
        )
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in folder.iterdir()):
        raise CheckpointError(f"{folder} holds no weights ({', '.join('*' + s for s in _WEIGHT_SUFFIXES)})")
    return folder
