"""Shared fixtures. Tests never touch the network, and find research data through ICG_REC_DATA_DIR."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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
        pytest.skip(f"MovieLens data not found at {root} (set ICG_REC_DATA_DIR to the folder holding movielens/)")
    return root
