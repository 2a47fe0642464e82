"""Column contracts for the three frames icg_rec passes around (polars)."""

from dataclasses import dataclass

import polars as pl

# interactions: one row per impression; label 1.0 = click, 0.0 = shown but not clicked.
INTERACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "item_id": pl.Int64(),
    "label": pl.Float64(),
    "timestamp": pl.Int64(),  # unix seconds
}
INTERACTIONS_OPTIONAL: dict[str, pl.DataType] = {
    "weight": pl.Float64(),  # impression weight, default 1
    "rating": pl.Float64(),  # explicit rating where the source has one (MovieLens)
}

# items: text fields feed the text encoder; image_path is null where the item has no cover.
ITEMS_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.Int64(),
    "title": pl.String(),
    "text": pl.String(),  # other text fields joined (MovieLens: genres "Comedy|Drama")
    "image_path": pl.String(),
}

USERS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
}


@dataclass
class Dataset:
    """Interactions with the items and users they refer to, as validated polars frames."""

    name: str  # e.g. "movielens/ml-latest-small" or "simworld"
    interactions: pl.DataFrame  # INTERACTIONS_SCHEMA (+ optional columns)
    items: pl.DataFrame  # ITEMS_SCHEMA
    users: pl.DataFrame  # USERS_SCHEMA
