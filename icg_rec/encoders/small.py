"""Cheap encoders for tiny worlds and inner loops: a colour-grid image encoder and a memoising text wrapper.

EfficientNet-Lite0 at 224 px costs ~100 ms a cover on a CPU core, which would dominate every alignment
step on 16-64 px SimWorld covers; the colour grid reads what such covers are made of (colour, layout,
contrast) in microseconds, differentiably.
"""

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from icg_rec.encoders.base import ImageEncoder, TextEncoder, check_texts


class ColourGridEncoder(ImageEncoder):
    """RGB means on a `grid` x `grid` layout plus each channel's standard deviation: 3 grid^2 + 3 dims."""

    def __init__(self, grid: int = 4, image_size: int = 16) -> None:
        super().__init__()
        self.grid = grid
        self.image_size = image_size
        self.dim = 3 * grid * grid + 3
        self.name = f"colour-grid-{grid}x{grid}@{image_size}"
        self.register_buffer("mean", torch.zeros(3, 1, 1))
        self.register_buffer("std", torch.ones(3, 1, 1))

    def embed(self, normalised: torch.Tensor) -> torch.Tensor:
        cells = F.adaptive_avg_pool2d(normalised, self.grid).flatten(1)  # (B, 3 grid^2)
        spread = normalised.flatten(2).std(dim=2)  # (B, 3)
        return torch.cat([cells, spread], dim=1)  # (B, dim)


class MemoTextEncoder(TextEncoder):
    """Wraps a TextEncoder and keeps each distinct text's embedding in memory (titles repeat every step)."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.dim = encoder.dim
        self.memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = check_texts(texts)
        if new := sorted({t for t in texts if t not in self.memo}):
            self.memo.update(zip(new, self.encoder.encode(new, batch_size, progress), strict=True))
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([self.memo[t] for t in texts])
