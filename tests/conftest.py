"""Shared fixtures. Tests never touch the network, and find research data through ICG_REC_DATA_DIR."""

import os

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


def write_catalogue(folder, n_items: int = 50, n_users: int = 200, n_impressions: int = 5000, seed: int = 0):
    """An own-data catalogue as a new user brings it: covers/{i}.png, items.csv, interactions.csv.

    Items are coloured squares; each user prefers one hue and clicks covers near it more often.

    Returns:
        (items.csv path, interactions.csv path).
    """
    from pathlib import Path

    import polars as pl
    from PIL import Image, ImageDraw

    folder = Path(folder)
    (folder / "covers").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    hues = rng.random(n_items)
    names = ["red", "orange", "yellow", "green", "cyan", "blue", "violet", "pink"]
    for i, hue in enumerate(hues):
        colour = tuple(int(255 * c) for c in _hsv(hue))
        image = Image.new("RGB", (32, 32), colour)
        ImageDraw.Draw(image).rectangle([8, 8, 23, 23], fill=tuple(255 - c for c in colour))
        image.save(folder / "covers" / f"{i}.png")
    pl.DataFrame(
        {
            "item_id": np.arange(n_items),
            "title": [f"{names[int(h * 8) % 8].title()} item {i}" for i, h in enumerate(hues)],
            "genres": [names[int(h * 8) % 8] for h in hues],
            "image_path": [f"covers/{i}.png" for i in range(n_items)],
        }
    ).write_csv(folder / "items.csv")
    taste = rng.random(n_users)
    users = rng.integers(0, n_users, n_impressions)
    items = rng.integers(0, n_items, n_impressions)
    distance = np.abs((hues[items] - taste[users] + 0.5) % 1.0 - 0.5)  # in [0, 0.5]
    clicked = rng.random(n_impressions) < 0.05 + 0.5 * (distance < 0.15)
    log = pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "label": clicked.astype(np.int64),
            "timestamp": 1_700_000_000 + np.arange(n_impressions) * 60,
        }
    )
    log.write_csv(folder / "interactions.csv")
    return folder / "items.csv", folder / "interactions.csv"


def _hsv(hue: float) -> tuple[float, float, float]:
    import colorsys

    return colorsys.hsv_to_rgb(hue, 0.8, 0.9)


@pytest.fixture(scope="session")
def catalogue_factory():
    """`write_catalogue(folder, n_items, n_users, n_impressions, seed)`: an own-data catalogue of any size."""
    return write_catalogue


@pytest.fixture(scope="session")
def own_catalogue(tmp_path_factory):
    """A 50-item, 200-user, 5,000-impression catalogue (PNG covers, CSV tables) written once per session."""
    return write_catalogue(tmp_path_factory.mktemp("catalogue"))
