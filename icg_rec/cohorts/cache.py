"""Content-addressed cover cache: one PNG per key, written atomically, never rewritten.

A key hashes everything a cover depends on (item content, cohort centroid version, generator version,
seed), so an unchanged key means the cover on disk is still right, and a crash can at worst leave a
temporary file, never a half-written cover.
"""

import hashlib
import io
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icg_rec.errors import CheckpointError
from icg_rec.io import atomic_write

KEY_PATTERN = re.compile(r"[0-9a-f]{24}")  # the form of every cover key: 24 lowercase hex characters


def cover_key(item_hash: str, cohort_version: str, generator_version: str, seed: int) -> str:
    """The cache key of one cover: sha256 over its inputs, 24 hex characters."""
    text = f"{item_hash}|{cohort_version}|{generator_version}|{seed}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class CoverCache:
    """Covers under `root/<key[:2]>/<key>.png`; a key of another form than KEY_PATTERN is refused."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where the cover of `key` lives (it may not exist); a malformed key raises CheckpointError."""
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            raise CheckpointError(
                f"cover key {key!r} is not 24 lowercase hex characters; refusing to use it as a path"
            )
        return self.root / key[:2] / f"{key}.png"

    def has(self, key: str) -> bool:
        """Whether the cover of `key` is already on disk."""
        return self.path(key).is_file()

    def put(self, key: str, image: torch.Tensor) -> str:
        """Writes one cover, (3, H, W) float in [0, 1], as an 8-bit PNG, atomically; returns its sha256."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise CheckpointError(f"a cover must be (3, H, W); got {tuple(image.shape)} for key {key}")
        pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)  # (3, H, W)
        buffer = io.BytesIO()
        Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy()).save(buffer, format="PNG")
        data = buffer.getvalue()
        atomic_write(self.path(key), lambda tmp: tmp.write_bytes(data))
        return hashlib.sha256(data).hexdigest()

    def digest(self, key: str) -> str:
        """sha256 (hex) of the cover file of `key`; a missing file raises CheckpointError."""
        path = self.path(key)
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            raise CheckpointError(f"cover {key} at {path} is missing or unreadable: {err}") from err

    def get(self, key: str, sha256: str | None = None) -> torch.Tensor:
        """Reads one cover back as (3, H, W) float in [0, 1].

        Args:
            key: the cover's key.
            sha256: the file's expected sha256 (from the manifest); None skips the check.

        Raises:
            CheckpointError: naming the key and file, if it is missing, does not decode, or differs
                from `sha256`.
        """
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise CheckpointError(f"cover {key} at {path} is missing or unreadable: {err}") from err
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise CheckpointError(f"cover {key} at {path} does not match the sha256 of its manifest")
        try:
            with Image.open(io.BytesIO(data)) as img:
                array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
        except (OSError, ValueError, SyntaxError) as err:
            raise CheckpointError(f"cover {key} at {path} does not decode: {err}") from err
        return torch.from_numpy(array).permute(2, 0, 1)
