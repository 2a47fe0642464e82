"""Writes a SimWorld to a folder: parquet frames, PNG covers, and the config that regenerates it."""

from dataclasses import asdict, replace
from pathlib import Path

import polars as pl

from icg_rec.data.schema import Dataset
from icg_rec.data.sim.world import SimConfig, SimWorld
from icg_rec.io import atomic_write, load_toml_config, write_json


def write_world(world: SimWorld, folder: str | Path) -> Dataset:
    """Writes `covers/{item_id}.png`, `{interactions,items,users}.parquet` and `config.json` (atomically).

    Args:
        world: the world to write.
        folder: destination, created if missing.

    Returns:
        The written dataset (items.image_path pointing at the PNGs).
    """
    folder = Path(folder)
    dataset = world.save_covers(folder / "covers")
    for name in ("interactions", "items", "users"):
        frame: pl.DataFrame = getattr(dataset, name)
        atomic_write(folder / f"{name}.parquet", lambda tmp, frame=frame: frame.write_parquet(tmp))
    write_json(folder / "config.json", asdict(world.config))
    return dataset


def run_generate(out: Path, config_path: Path | None, seed: int | None) -> None:
    """CLI handler of `icg-rec sim generate`: builds a world and writes it to `out`.

    Args:
        out: destination folder.
        config_path: TOML file with SimConfig fields (top level), or None for the defaults.
        seed: overrides the config's seed when given.
    """
    config = load_toml_config(SimConfig, config_path) if config_path is not None else SimConfig()
    if seed is not None:
        config = replace(config, seed=seed)
    dataset = write_world(SimWorld.generate(config), out)
    clicks = int(dataset.interactions["label"].sum())
    print(
        f"wrote {out}: {dataset.users.height} users, {dataset.items.height} items with covers, "
        f"{dataset.interactions.height} impressions, {clicks} clicks (CTR {clicks / dataset.interactions.height:.3f})"
    )
