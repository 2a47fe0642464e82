"""Content-addressed cover cache: one PNG per key, written atomically, never rewritten.

A key hashes everything a cover depends on (item content, cohort centroid version, generator version,
seed), so an unchanged key means the cover on disk is still right, and a crash can at worst leave a
temporary file, never a half-written cover.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icg_rec.errors import CheckpointError
from icg_rec.io import atomic_write


def cover_key(item_hash: str, cohort_version: str, generator_version: str, seed: int) -> str:
    """The cache key of one cover: sha256 over its inputs, 24 hex characters."""
    text = f"{item_hash}|{cohort_version}|{generator_version}|{seed}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class CoverCache:
    """Covers under `root/<key[:2]>/<key>.png`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where the cover of `key` lives (it may not exist)."""
        return self.root / key[:2] / f"{key}.png"

    def has(self, key: str) -> bool:
        """Whether the cover of `key` is already on disk."""
        return self.path(key).is_file()

    def put(self, key: str, image: torch.Tensor) -> Path:
        """Writes one cover, (3, H, W) float in [0, 1], as an 8-bit PNG, atomically."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise CheckpointError(f"a cover must be (3, H, W); got {tuple(image.shape)} for key {key}")
        pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)  # (3, H, W)
        pil = Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())
        return atomic_write(self.path(key), lambda tmp: pil.save(tmp, format="PNG"))

    def get(self, key: str) -> torch.Tensor:
        """Reads one cover back as (3, H, W) float in [0, 1]; a missing or corrupt file names the key."""
        path = self.path(key)
        try:
            with Image.open(path) as img:
                array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"cover {key} at {path} is missing or unreadable: {err}") from err
        return torch.from_numpy(array).permute(2, 0, 1)
