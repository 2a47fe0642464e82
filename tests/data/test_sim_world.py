"""SimWorld generation: determinism, frame contracts, log consistency, save_covers, bad configs."""

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from icg_rec.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA, validate_dataset
from icg_rec.data.sim import GENRES, CoverStyle, SimConfig, SimWorld, render_covers
from icg_rec.data.sim.world import _COLOUR_WORDS, _GREY_WORDS

TINY = SimConfig(n_users=40, n_items=24, n_cohorts=3, image_size=16, impressions_per_user=6, seed=3)


@pytest.fixture(scope="module")
def world() -> SimWorld:
    return SimWorld.generate(TINY)


def _tensors(w: SimWorld) -> dict[str, torch.Tensor]:
    return {
        "covers": w.covers,
        "user_taste": w.user_taste,
        "user_cohort": w.user_cohort,
        "item_quality": w.item_quality,
        "item_genre": w.item_genre,
        "impression_prob": w.impression_prob,
        **{f"oracle.{k}": v for k, v in w.oracle.state_dict().items()},
    }


def test_same_seed_gives_identical_world_and_other_seed_differs(world):
    again = SimWorld.generate(TINY)
    for name, tensor in _tensors(world).items():
        assert torch.equal(tensor, _tensors(again)[name]), name
    for name in ("interactions", "items", "users"):
        assert getattr(world.dataset, name).equals(getattr(again.dataset, name)), name

    other = SimWorld.generate(replace(TINY, seed=4))
    assert not torch.equal(world.covers, other.covers)
    assert not world.dataset.interactions.equals(other.dataset.interactions)
    assert world.dataset.items["title"].to_list() != other.dataset.items["title"].to_list()


def test_frames_follow_the_schema_and_the_sampling_contract(world):
    data = validate_dataset(world.dataset)
    assert data.interactions.schema == pl.Schema(INTERACTIONS_SCHEMA)
    assert data.items.schema == pl.Schema(ITEMS_SCHEMA)
    assert data.users.schema == pl.Schema(USERS_SCHEMA)
    assert data.items["item_id"].to_list() == list(range(TINY.n_items))
    assert data.users["user_id"].to_list() == list(range(TINY.n_users))
    assert data.items["image_path"].null_count() == TINY.n_items

    frame = data.interactions
    assert frame.height == TINY.n_users * TINY.impressions_per_user
    per_user = frame.group_by("user_id").agg(
        pl.col("item_id").n_unique().alias("distinct"), pl.len().alias("rows")
    )
    assert per_user["distinct"].to_list() == [TINY.impressions_per_user] * TINY.n_users
    assert per_user["rows"].to_list() == [TINY.impressions_per_user] * TINY.n_users
    assert frame["timestamp"].is_sorted()
    assert frame["timestamp"].min() >= TINY.start_time
    assert frame["timestamp"].max() < TINY.start_time + TINY.days * 86_400
    assert set(frame["label"].unique().to_list()) == {0.0, 1.0}


def test_logged_probabilities_are_the_oracle_on_the_reference_covers(world):
    frame = world.dataset.interactions
    users = torch.tensor(frame["user_id"].to_numpy())
    items = torch.tensor(frame["item_id"].to_numpy())
    with torch.no_grad():
        prob = world.oracle.click_prob(users, world.covers[items], items)
    torch.testing.assert_close(prob, world.impression_prob)


def test_covers_and_tensors_have_the_documented_shapes(world):
    size = TINY.image_size
    assert world.covers.shape == (TINY.n_items, 3, size, size) and world.covers.dtype == torch.float32
    assert 0.0 <= world.covers.min() and world.covers.max() <= 1.0
    assert world.user_cohort.dtype == torch.int64 and world.user_cohort.shape == (TINY.n_users,)
    assert world.user_cohort.max() < TINY.n_cohorts
    assert world.user_taste.shape == (TINY.n_users, world.oracle.attribute_mean.shape[0])
    assert world.item_quality.shape == (TINY.n_items,)
    torch.testing.assert_close(world.covers, render_covers(world.item_style, size), rtol=0, atol=0)


def test_titles_name_the_cover_colour_and_text_names_the_genre(world):
    style = world.item_style
    hue_bin = (torch.round(style.hue * 6.0).long() % 6).tolist()
    for i, (title, text) in enumerate(world.dataset.items.select("title", "text").iter_rows()):
        words = _GREY_WORDS if style.saturation[i] < 0.25 else _COLOUR_WORDS[hue_bin[i]]
        assert title.split()[0] in words, (i, title)
        assert text.split("|")[0] == GENRES[world.item_genre[i]][0], (i, text)


def test_popular_items_are_shown_more_often():
    config = SimConfig(n_users=400, n_items=50, n_cohorts=2, image_size=8, impressions_per_user=5, seed=0)
    counts = SimWorld.generate(config).dataset.interactions["item_id"].value_counts()["count"].sort()
    assert counts[-5:].mean() > 4 * counts[:5].mean()


def test_save_covers_round_trips_exactly(world, tmp_path):
    saved = world.save_covers(tmp_path / "covers")
    paths = saved.items["image_path"].to_list()
    assert paths == [str((tmp_path / "covers" / f"{i}.png").resolve()) for i in range(TINY.n_items)]
    assert sorted(p.name for p in (tmp_path / "covers").iterdir()) == sorted(
        f"{i}.png" for i in range(TINY.n_items)
    )
    loaded = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])  # (n, S, S, 3) uint8
    torch.testing.assert_close(
        torch.from_numpy(loaded).permute(0, 3, 1, 2).float() / 255.0, world.covers, rtol=0, atol=0
    )
    assert saved.interactions is world.dataset.interactions
    assert (
        world.dataset.items["image_path"].null_count() == TINY.n_items
    )  # the world's own dataset is untouched


def test_best_cohort_cover_is_liked_most_by_its_own_cohort(world):
    styles, covers = world.best_cohort_covers(n_candidates=64, seed=0)
    assert len(styles) == TINY.n_cohorts and covers.shape == (TINY.n_cohorts, 3, 16, 16)
    with torch.no_grad():
        liking = world.oracle.cohort_taste_logit(covers)  # (cover of cohort c, cohort)
    torch.testing.assert_close(liking.diagonal(), liking.max(dim=0).values, rtol=0, atol=0)  # ties allowed
    torch.testing.assert_close(covers, render_covers(styles, 16), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"impressions_per_user": 25}, "impressions_per_user"),
        ({"n_users": 0}, "n_users"),
        ({"image_size": 4}, "image_size"),
    ],
)
def test_bad_config_is_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        SimWorld.generate(replace(TINY, **change))


def test_cover_style_build_refuses_unknown_fields_and_ragged_lengths():
    with pytest.raises(ValueError, match="unknown CoverStyle field"):
        CoverStyle.build(colour=0.3)
    with pytest.raises(ValueError, match="'brightness' has 2 values; expected 1 or 3"):
        CoverStyle.build(hue=[0.0, 0.1, 0.2], brightness=[0.2, 0.3])
    assert len(CoverStyle.build(hue=[0.0, 0.1, 0.2], brightness=0.4)) == 3
