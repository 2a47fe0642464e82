"""Stage `prepare`: the validated items and log (the dataset contract), split into train and test rows."""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from icg_rec.data.contract import ColumnMapping, read_interactions, read_items
from icg_rec.data.splits import per_user_temporal_split, temporal_split
from icg_rec.io import atomic_write, file_sha256, write_json
from icg_rec.pipeline.stage import StageOutput

SPLITS = ("user_temporal", "temporal")


@dataclass
class PrepareConfig:
    split: str = (
        "user_temporal"  # "user_temporal": each user's latest rows are test; "temporal": one time cut
    )
    test_fraction: float = 0.2  # share of rows (of each user's rows, for "user_temporal") held out as test


@dataclass(frozen=True)
class Sources:
    """The external inputs of a run: the items and the log, read through the dataset contract."""

    items: pl.DataFrame  # read_items output (absolute image paths)
    interactions: pl.DataFrame  # read_interactions output

    @classmethod
    def read(cls, items: Any, interactions: Any, columns: ColumnMapping | None = None) -> "Sources":
        """Reads and validates both tables (see `icg_rec.data.contract`).

        Args:
            items: the items table: a CSV / parquet path or a polars / pandas / pyarrow table.
            interactions: the log, likewise.
            columns: contract name -> your column name, per table.

        Returns:
            The validated sources.
        """
        frame = read_items(items, columns)
        return cls(frame, read_interactions(interactions, columns, items=frame))

    @property
    def digest(self) -> str:
        """sha256 over both tables' content and every image file's bytes."""
        digest = hashlib.sha256()
        for frame in (self.items, self.interactions):
            digest.update(frame.write_csv().encode())
        for path in self.items["image_path"]:
            digest.update(file_sha256(path).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class Prepared(StageOutput):
    """items.parquet, train.parquet, test.parquet and summary.json."""

    def items(self) -> pl.DataFrame:
        """The items (item_id, title, text, image_path [, item_key])."""
        return pl.read_parquet(self.path("items.parquet"))

    def train(self) -> pl.DataFrame:
        """The training rows of the log."""
        return pl.read_parquet(self.path("train.parquet"))

    def test(self) -> pl.DataFrame:
        """The test rows of the log (later than the training rows, per user or globally)."""
        return pl.read_parquet(self.path("test.parquet"))

    def summary(self) -> dict:
        """Counts of items, users, rows and clicks per split."""
        return self.read_json("summary.json")


def prepare(config: PrepareConfig, sources: Sources, folder: Path) -> Prepared:
    """Splits the log and writes the stage's tables.

    Args:
        config: the split.
        sources: the validated items and log.
        folder: the stage folder.

    Returns:
        The prepared tables.
    """
    if config.split not in SPLITS:
        raise ValueError(f"prepare.split must be one of {SPLITS}, got {config.split!r}")
    split = per_user_temporal_split if config.split == "user_temporal" else temporal_split
    train, test = split(sources.interactions, config.test_fraction)
    if test.height == 0:
        raise ValueError(
            f"the {config.split} split with test_fraction {config.test_fraction} leaves no test rows "
            f"(log of {sources.interactions.height} rows): raise test_fraction or bring more rows per user"
        )
    for name, frame in (("items", sources.items), ("train", train), ("test", test)):
        atomic_write(folder / f"{name}.parquet", lambda tmp, f=frame: f.write_parquet(tmp))
    write_json(
        folder / "summary.json",
        {
            "items": sources.items.height,
            "users": sources.interactions["user_id"].n_unique(),
            "rows": {"train": train.height, "test": test.height},
            "clicks": {"train": int(train["label"].sum()), "test": int(test["label"].sum())},
            "optional_columns": [c for c in ("cover_id", "propensity") if c in sources.interactions.columns],
        },
    )
    return Prepared(folder)
