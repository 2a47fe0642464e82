"""A SimWorld where covers matter to a ranker: users were shown the cover refreshed for their cohort.

A SimWorld's own log shows every user the item's one reference cover, so a cover is a property of the
item and an item-id embedding learns whatever it does to clicks. Here a share of the (item, cohort)
pairs has a refreshed cover, rendered from the item's style pulled toward the style its cohort likes
most (`SimWorld.best_cohort_covers`) by a random amount; the other pairs keep the reference cover. Each
impression of the world's log shows the user the cover of (item, the user's cohort), and its click is
redrawn from the oracle on that cover. A ranker that knows which cover a row's user saw can now learn
something no id table holds.

The cohorts are the world's true taste cohorts (`SimWorld.user_cohort`); in a real service they come
from `icg_rec.cohorts` and are noisier.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from icg_rec.data.sim.render import CoverStyle, render_covers
from icg_rec.data.sim.world import SimConfig, SimWorld

DEFAULT_COHORT = -1  # cohort id of an item's reference cover (icg_rec.features.store.DEFAULT_COHORT)


@dataclass
class CohortCoverConfig:
    share: float = 0.5  # share of (item, cohort) pairs that have a refreshed cover
    min_pull: float = (
        0.3  # a refreshed style moves this share of the way toward the cohort's favourite, at least
    )
    n_candidates: int = 1024  # random styles searched for each cohort's favourite
    seed: int = 0  # which pairs are refreshed, how far each moves, and the clicks


@dataclass
class CohortCoverWorld:
    """A SimWorld, every cover shown in it, and a log of clicks on the cover each user was shown."""

    world: SimWorld
    item_ids: (
        np.ndarray
    )  # (n_covers,) int64: every item's reference cover first (row = item id), then refreshed ones
    cohort_ids: np.ndarray  # (n_covers,) int64: DEFAULT_COHORT for a reference cover, else the cohort
    covers: torch.Tensor  # (n_covers, 3, S, S) float in [0, 1]
    interactions: pl.DataFrame  # user_id, item_id, label, timestamp, cohort_id (user's), cover_id (row shown)


def cohort_cover_world(sim: SimConfig, config: CohortCoverConfig | None = None) -> CohortCoverWorld:
    """Generates the SimWorld of `sim`, refreshes a share of its (item, cohort) covers and redraws its log.

    Args:
        sim: the world's sizes and seed.
        config: share of refreshed pairs, how far they move, seed.

    Returns:
        The world, its covers and the log of clicks on the covers shown.
    """
    config = config or CohortCoverConfig()
    if not 0.0 <= config.share <= 1.0 or not 0.0 <= config.min_pull <= 1.0:
        raise ValueError(f"share and min_pull must lie in [0, 1], got {config.share}, {config.min_pull}")
    world = SimWorld.generate(sim)
    n_items, n_cohorts = sim.n_items, sim.n_cohorts
    favourite, _ = world.best_cohort_covers(config.n_candidates, seed=config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    refreshed = torch.rand(n_items, n_cohorts, generator=gen) < config.share  # (n_items, C)
    pull = config.min_pull + (1.0 - config.min_pull) * torch.rand(n_items, n_cohorts, generator=gen)
    items, cohorts = refreshed.nonzero(as_tuple=True)  # (k,) each, item-major
    style = _pulled(world.item_style.take(items), favourite.take(cohorts), pull[items, cohorts], gen)
    covers = torch.cat([world.covers, render_covers(style, sim.image_size)])  # (n_items + k, 3, S, S)

    cover_of = torch.arange(n_items)[:, None].repeat(1, n_cohorts)  # (n_items, C): the reference cover ...
    cover_of[items, cohorts] = n_items + torch.arange(len(items))  # ... unless the pair was refreshed
    log = world.dataset.interactions
    users = torch.tensor(log["user_id"].to_numpy())  # (N,)
    shown_items = torch.tensor(log["item_id"].to_numpy())  # (N,)
    user_cohort = world.user_cohort[users]  # (N,)
    shown = cover_of[shown_items, user_cohort]  # (N,) cover row each impression showed
    with torch.no_grad():
        z = world.oracle.standardized_attributes(covers)  # (n_covers, A)
        prob = torch.sigmoid(world.oracle.logits_from_attributes(users, z[shown], shown_items))  # (N,)
    label = (torch.rand(prob.shape, generator=gen) < prob).double()
    interactions = log.with_columns(
        label=pl.Series(label.numpy()),
        cohort_id=pl.Series(user_cohort.numpy(), dtype=pl.Int64),
        cover_id=pl.Series(shown.numpy(), dtype=pl.Int64),
    )
    return CohortCoverWorld(
        world=world,
        item_ids=np.concatenate([np.arange(n_items), items.numpy()]).astype(np.int64),
        cohort_ids=np.concatenate([np.full(n_items, DEFAULT_COHORT), cohorts.numpy()]).astype(np.int64),
        covers=covers,
        interactions=interactions,
    )


def _pulled(item: CoverStyle, favourite: CoverStyle, pull: torch.Tensor, gen: torch.Generator) -> CoverStyle:
    """Each item style moved `pull` (k,) of the way toward its cohort's favourite (hues the short way round)."""

    def toward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + pull * (b - a)

    def hue_toward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + pull * ((b - a + 0.5) % 1.0 - 0.5)) % 1.0

    switch = torch.rand(len(pull), generator=gen) < pull  # the subject's shape follows with probability pull
    return CoverStyle(
        hue=hue_toward(item.hue, favourite.hue),
        saturation=toward(item.saturation, favourite.saturation),
        brightness=toward(item.brightness, favourite.brightness),
        accent_hue=hue_toward(item.accent_hue, favourite.accent_hue),
        subject_brightness=toward(item.subject_brightness, favourite.subject_brightness),
        subject_size=toward(item.subject_size, favourite.subject_size),
        shape=torch.where(switch, favourite.shape, item.shape),
        stripes=toward(item.stripes, favourite.stripes),
    )
