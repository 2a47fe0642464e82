"""A toy own-data catalogue: PNG covers, items.csv and interactions.csv, as a new user brings them.

Items are coloured squares with a title naming their colour; each user prefers one hue and clicks covers
near it more often. It exists to try `icg-rec run` without data and to test the README walk-through.
"""

import colorsys
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw

COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "violet", "pink")


def write_toy_catalogue(
    folder: str | Path, n_items: int = 50, n_users: int = 200, n_impressions: int = 5000, seed: int = 0
) -> tuple[Path, Path]:
    """Writes `covers/{i}.png`, `items.csv` (image paths relative to it) and `interactions.csv`.

    Args:
        folder: destination (created).
        n_items: items, ids 0..n_items-1, each a 32 px PNG cover.
        n_users: users, ids 0..n_users-1.
        n_impressions: rows of the log, one a minute; a click is likelier when the cover's hue is near
            the user's taste (5% base rate, +50% within 0.15 of the hue circle).
        seed: every draw.

    Returns:
        (items.csv path, interactions.csv path).
    """
    folder = Path(folder)
    (folder / "covers").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    hues = rng.random(n_items)
    for i, hue in enumerate(hues):
        colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.8, 0.9))
        image = Image.new("RGB", (32, 32), colour)
        ImageDraw.Draw(image).rectangle([8, 8, 23, 23], fill=tuple(255 - c for c in colour))
        image.save(folder / "covers" / f"{i}.png")
    names = [COLOURS[int(h * len(COLOURS)) % len(COLOURS)] for h in hues]
    pl.DataFrame(
        {
            "item_id": np.arange(n_items),
            "title": [f"{name.title()} item {i}" for i, name in enumerate(names)],
            "genres": names,
            "image_path": [f"covers/{i}.png" for i in range(n_items)],
        }
    ).write_csv(folder / "items.csv")
    taste = rng.random(n_users)
    users = rng.integers(0, n_users, n_impressions)
    items = rng.integers(0, n_items, n_impressions)
    distance = np.abs((hues[items] - taste[users] + 0.5) % 1.0 - 0.5)  # on the hue circle, in [0, 0.5]
    clicked = rng.random(n_impressions) < 0.05 + 0.5 * (distance < 0.15)
    pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "label": clicked.astype(np.int64),
            "timestamp": 1_700_000_000 + np.arange(n_impressions) * 60,
        }
    ).write_csv(folder / "interactions.csv")
    return folder / "items.csv", folder / "interactions.csv"
