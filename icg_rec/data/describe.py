"""Counts that describe a Dataset (users, items, posters, interactions, click rate, time range)."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from icg_rec.data.movielens import load_movielens
from icg_rec.data.paths import movielens_dir
from icg_rec.data.schema import Dataset
from icg_rec.io import write_json


def describe(dataset: Dataset) -> dict[str, str | int | float | None]:
    """Summarises a dataset; "posters" are the items with a non-null image_path.

    Args:
        dataset: a validated Dataset.

    Returns:
        dataset, users, items, items_with_posters, interactions, interactions_on_items_with_posters,
        interacted_items_with_posters, users_on_items_with_posters, click_rate (mean label; None
        without interactions), time_min / time_max (unix seconds) and time_min_utc / time_max_utc.
    """
    rows = dataset.interactions
    with_poster = dataset.items.filter(pl.col("image_path").is_not_null())["item_id"].implode()
    on_posters = rows.filter(pl.col("item_id").is_in(with_poster))
    time_min, time_max = rows["timestamp"].min(), rows["timestamp"].max()
    return {
        "dataset": dataset.name,
        "users": dataset.users.height,
        "items": dataset.items.height,
        "items_with_posters": dataset.items["image_path"].is_not_null().sum(),
        "interactions": rows.height,
        "interactions_on_items_with_posters": on_posters.height,
        "interacted_items_with_posters": on_posters["item_id"].n_unique(),
        "users_on_items_with_posters": on_posters["user_id"].n_unique(),
        "click_rate": rows["label"].mean(),
        "time_min": time_min,
        "time_max": time_max,
        "time_min_utc": _utc(time_min),
        "time_max_utc": _utc(time_max),
    }


def run_describe(dataset: str, data_dir: Path | None, layout: str, json_path: Path | None, seed: int) -> None:
    """Loads a dataset by name, prints its description and optionally writes it as JSON.

    Args:
        dataset: "movielens" or "simworld".
        data_dir: MovieLens root holding `<layout>/` and, if present, `posters/`; default
            `paths.movielens_dir()`. Unused for simworld.
        layout: MovieLens layout folder name inside data_dir (ml-latest-small, ml-1m, ml-100k, ...).
        json_path: where to write the description, or None.
        seed: SimWorld seed (default SimConfig otherwise). Unused for movielens.
    """
    if dataset == "movielens":
        root = Path(data_dir) if data_dir is not None else movielens_dir()
        posters = root / "posters"
        loaded = load_movielens(root / layout, posters if posters.is_dir() else None)
    else:
        from icg_rec.data.sim import SimConfig, SimWorld  # imports torch: only when asked for

        loaded = SimWorld.generate(SimConfig(seed=seed)).dataset
    summary = describe(loaded)
    for key, value in summary.items():
        print(f"{key}: {value}")
    if json_path is not None:
        write_json(json_path, summary)


def _utc(timestamp: int | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()
