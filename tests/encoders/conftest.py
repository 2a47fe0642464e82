"""Encoders shared by the encoder tests: the real defaults (loaded once per session) and tiny fakes."""

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from icg_rec.encoders import EfficientNetLite0Encoder, ImageEncoder, MiniLMTextEncoder, TextEncoder


@pytest.fixture(scope="session")
def minilm() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


@pytest.fixture(scope="session")
def lite0() -> EfficientNetLite0Encoder:
    return EfficientNetLite0Encoder()


class CountingTextEncoder(TextEncoder):
    """Embeds a text as a fixed function of its characters; records every batch it is asked for."""

    def __init__(self, name: str = "counting-text@1") -> None:
        self.name = name
        self.dim = 4
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array(
            [[len(t), sum(map(ord, t)) % 97, t.count("a"), 1.0] for t in texts], dtype=np.float32
        ).reshape(len(texts), 4)


class TinyImageEncoder(ImageEncoder):
    """A seeded 1x1 conv + mean pool at 8 x 8; records the sizes of the batches it encodes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.name = "tiny-image@1"
        self.dim = 5
        self.image_size = 8
        self.conv = nn.Conv2d(3, 5, kernel_size=1)
        self.register_buffer("mean", torch.full((3, 1, 1), 0.5))
        self.register_buffer("std", torch.full((3, 1, 1), 0.25))
        self.calls: list[int] = []
        self.freeze()

    def embed(self, normalised: torch.Tensor) -> torch.Tensor:
        return self.conv(normalised).mean(dim=(2, 3))  # (B, 5)

    def encode(self, images, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        self.calls.append(len(images))
        return super().encode(images, batch_size=batch_size, progress=progress)


@pytest.fixture
def counting_text_encoder() -> CountingTextEncoder:
    return CountingTextEncoder()


@pytest.fixture
def tiny_image_encoder() -> TinyImageEncoder:
    return TinyImageEncoder()
