"""Shared fixtures. Tests never touch the network, and find research data through ICG_REC_DATA_DIR."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from icg_rec.data.paths import movielens_dir  # noqa: E402

# Test models are tiny: one thread is as fast, and two threads on two shared cores stalled up to 12x here.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def movielens_root():
    """The shared MovieLens folder, or a skip that says where it was looked for."""
    root = movielens_dir()
    if not (root / "ml-latest-small" / "ratings.csv").is_file():
        pytest.skip(
            f"MovieLens data not found at {root} (set ICG_REC_DATA_DIR to the folder holding movielens/)"
        )
    return root


class TinyImageEncoder:
    """ImageEncoder-protocol perception for tests: per-channel mean and std of a PIL image (6-d)."""

    name = "tiny-colour-stats"
    dim = 6

    def encode(self, images, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        rows = [np.asarray(image, dtype=np.float32) / 255.0 for image in images]
        return np.stack([np.concatenate([a.mean(axis=(0, 1)), a.std(axis=(0, 1))]) for a in rows])


class TinyTextEncoder:
    """TextEncoder-protocol perception for tests: counts of the vowels (5-d)."""

    name = "tiny-letters"
    dim = 5

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.array([[t.lower().count(c) for c in "aeiou"] for t in texts], dtype=np.float32)


@pytest.fixture(scope="session")
def tiny_perception():
    """The tiny perception classes (image, text): instantiate them where a model needs encoders."""
    return TinyImageEncoder, TinyTextEncoder


@pytest.fixture(scope="session")
def torchrun() -> list[str]:
    """torch's launcher for 2 local processes on a rendezvous port of its choosing: append a script (or
    `-m module`) and its arguments."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
