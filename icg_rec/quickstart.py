"""`icg-rec quickstart`: the `quickstart` preset of the stage pipeline (`icg_rec.pipeline`) on a SimWorld
written as an own-data catalogue (`world/`), plus the one thing only a simulation has: its click oracle
judges the covers on the test rows (original, generic generated, generated for the user's cohort) and
never trains anything. Results: quickstart.json (run.json's keys + "oracle_ctr") and report.md.
"""

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import polars as pl
import torch

from icg_rec.cohorts.refresh import GENERIC_COHORT
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.data.sim.export import write_world
from icg_rec.io import atomic_write, write_json
from icg_rec.pipeline.cohorts import Cohorts
from icg_rec.pipeline.config import RunConfig
from icg_rec.pipeline.prepare import Prepared
from icg_rec.pipeline.presets import preset
from icg_rec.pipeline.refresh import Refreshed
from icg_rec.pipeline.run import run_pipeline
from icg_rec.pipeline.toml import load_toml, override


@dataclass
class QuickstartConfig:
    """The world and the run; the world's cover size and seed are the run's."""

    world: SimConfig = field(default_factory=SimConfig)  # the SimWorld (users, items, taste cohorts, log)
    run: RunConfig = field(default_factory=lambda: preset("quickstart"))  # the stage pipeline

    @classmethod
    def from_toml(cls, path: str | Path) -> "QuickstartConfig":
        """A `[world]` table of SimConfig fields; every other key is a RunConfig key (see `icg-rec run`)."""
        values = load_toml(path)
        world = override(SimConfig(), values.pop("world", {}), source=f"{path} [world]")
        return cls(world, preset("quickstart").with_values(values, source=str(path)))


def run_quickstart(out_dir: str | Path, config: QuickstartConfig | None = None) -> dict:
    """Runs the pipeline on a SimWorld into `out_dir` (world/ + the stage folders) and judges its covers.

    Returns:
        The content of quickstart.json: run.json's keys plus "oracle_ctr", "seconds" and "config".
    """
    config = config or QuickstartConfig()
    out = Path(out_dir)
    start = time.perf_counter()
    world = SimWorld.generate(
        replace(config.world, image_size=config.run.encode.image_size, seed=config.run.seed)
    )
    write_world(world, out / "world")
    summary = run_pipeline(
        out / "world" / "items.parquet", out / "world" / "interactions.parquet", out, config.run
    )
    oracle = judge(
        world, Prepared(out / "prepare").test(), Cohorts(out / "cohorts"), Refreshed(out / "refresh")
    )
    result = {
        "oracle_ctr": oracle,
        **summary,
        "seconds": round(time.perf_counter() - start, 1),
        "config": {"world": asdict(world.config), "run": asdict(config.run)},
    }
    write_json(out / "quickstart.json", result)
    text = (out / "report.md").read_text() + _oracle_section(oracle)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(text))
    return result


def judge(world: SimWorld, test: pl.DataFrame, cohorts: Cohorts, refreshed: Refreshed) -> dict[str, float]:
    """Mean oracle p(click) over the test rows for each kind of cover, and the relative gains.

    Args:
        world: the SimWorld of the run.
        test: the test rows.
        cohorts: the users' cohorts.
        refreshed: the generic and per-cohort covers.

    Returns:
        original, generic, aligned_personalized, personalized_vs_generic, personalized_vs_original.
    """
    covers = refreshed.covers(generic=True)  # every cover read and checked once, not once per test row
    keys = zip(covers.item_ids.tolist(), covers.cohort_ids.tolist(), strict=True)
    row_of = {key: r for r, key in enumerate(keys)}  # (item_id, cohort_id) -> row of covers.images
    users, item_ids = test["user_id"].to_torch(), test["item_id"].to_torch()
    user_cohort = cohorts.cohorts().cohort_of(users.numpy())
    items, own = item_ids.tolist(), user_cohort.tolist()
    generic = torch.tensor([row_of[(i, GENERIC_COHORT)] for i in items])  # (n,) rows of covers.images
    personal = torch.tensor([row_of[(i, c)] for i, c in zip(items, own, strict=True)])  # (n,)
    kinds = {
        "original": world.covers[item_ids],
        "generic": covers.images[generic],
        "aligned_personalized": covers.images[personal],
    }
    with torch.no_grad():
        result = {
            name: float(world.oracle.click_prob(users, images, item_ids).mean())
            for name, images in kinds.items()
        }
    result["personalized_vs_generic"] = result["aligned_personalized"] / result["generic"] - 1
    result["personalized_vs_original"] = result["aligned_personalized"] / result["original"] - 1
    return result


def _oracle_section(o: dict[str, float]) -> str:
    return f"""
## Covers judged by SimWorld's oracle (test rows, never used for training)

| cover shown | mean oracle p(click) |
|---|---|
| original reference cover | {o["original"]:.4f} |
| generic generated cover (zero user) | {o["generic"]:.4f} |
| cover generated for the user's cohort, aligned | {o["aligned_personalized"]:.4f} |

Personalized vs generic: {o["personalized_vs_generic"]:+.1%}; vs original: {o["personalized_vs_original"]:+.1%}.
"""
