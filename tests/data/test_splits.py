import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from icg_rec.data.splits import (
    cold_item_split,
    leave_last_n,
    per_user_temporal_split,
    sample_negatives,
    temporal_split,
)
from icg_rec.errors import SchemaError


def _log(n_users: int = 30, rows_per_user: int = 10, n_items: int = 50, seed: int = 0) -> pl.DataFrame:
    """A random log with many equal timestamps, so that ties must be broken."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), rows_per_user)
    items = np.concatenate([rng.choice(n_items, rows_per_user, replace=False) for _ in range(n_users)])
    return pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "label": rng.integers(0, 2, len(users)).astype(float),
            "timestamp": rng.integers(0, 5, len(users)) * 100,
        }
    )


def _shuffled(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sample(fraction=1.0, shuffle=True, seed=7)


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(["user_id", "item_id", "timestamp"])


def test_temporal_split_cuts_globally_and_breaks_ties_by_item():
    frame = pl.DataFrame(
        {
            "user_id": [1, 2, 3, 1, 2],
            "item_id": [5, 4, 3, 2, 1],
            "label": [1.0] * 5,
            "timestamp": [10, 20, 20, 20, 30],
        }
    )
    train, test = temporal_split(frame, test_fraction=0.4)
    assert train.select("item_id", "timestamp").rows() == [(5, 10), (2, 20), (3, 20)]
    assert test.select("item_id", "timestamp").rows() == [(4, 20), (1, 30)]


def test_temporal_split_does_not_leak_and_ignores_input_order():
    frame = _log()
    train, test = temporal_split(frame, test_fraction=0.25)
    assert (train.height, test.height) == (225, 75)
    assert train["timestamp"].max() <= test["timestamp"].min()
    train2, test2 = temporal_split(_shuffled(frame), test_fraction=0.25)
    assert_frame_equal(_sorted(train), _sorted(train2))
    assert_frame_equal(_sorted(test), _sorted(test2))


def test_per_user_temporal_split_takes_each_users_last_fifth():
    frame = pl.DataFrame(
        {
            "user_id": [1] * 5 + [2] * 4,
            "item_id": [9, 8, 7, 6, 5, 1, 2, 3, 4],
            "label": [1.0] * 9,
            "timestamp": [10, 20, 30, 40, 40, 1, 2, 3, 4],
        }
    )
    train, test = per_user_temporal_split(frame, test_fraction=0.2)
    # user 1: floor(5 * 0.2) = 1 test row; the tie at t=40 goes to the larger item id.
    # user 2: floor(4 * 0.2) = 0 test rows.
    assert test.select("user_id", "item_id").rows() == [(1, 6)]
    assert train.height == 8


def test_per_user_temporal_split_has_no_time_leak_per_user_and_is_order_free():
    frame = _log()
    train, test = per_user_temporal_split(frame)
    assert (train.height, test.height) == (240, 60)
    assert test.group_by("user_id").len()["len"].to_list() == [2] * 30
    bounds = (
        train.group_by("user_id")
        .agg(last=pl.col("timestamp").max())
        .join(test.group_by("user_id").agg(first=pl.col("timestamp").min()), on="user_id")
    )
    assert (bounds["last"] <= bounds["first"]).all()
    train2, test2 = per_user_temporal_split(_shuffled(frame))
    assert_frame_equal(train, train2)
    assert_frame_equal(test, test2)


def test_leave_last_n_keeps_short_histories_in_train():
    frame = pl.DataFrame(
        {"user_id": [1, 1, 1, 2], "item_id": [1, 2, 3, 1], "label": [1.0] * 4, "timestamp": [3, 1, 2, 5]}
    )
    train, test = leave_last_n(frame, n=1)
    assert test.select("user_id", "item_id").rows() == [(1, 1)]
    assert train.select("user_id", "item_id").rows() == [(1, 2), (1, 3), (2, 1)]
    train, test = leave_last_n(frame, n=2)
    assert test.select("user_id", "item_id").rows() == [(1, 3), (1, 1)]


def test_cold_item_split_holds_out_whole_items_deterministically():
    frame = _log()
    train, test = cold_item_split(frame, item_fraction=0.2, seed=3)
    n_items = frame["item_id"].n_unique()
    assert test["item_id"].n_unique() == int(n_items * 0.2)
    assert set(train["item_id"]).isdisjoint(set(test["item_id"]))
    assert train.height + test.height == frame.height
    again_train, again_test = cold_item_split(frame, item_fraction=0.2, seed=3)
    assert_frame_equal(train, again_train)
    assert_frame_equal(test, again_test)
    other = cold_item_split(frame, item_fraction=0.2, seed=4)[1]
    assert set(other["item_id"]) != set(test["item_id"])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fractions_outside_the_open_unit_interval_are_refused(fraction):
    frame = _log()
    for split in (temporal_split, per_user_temporal_split):
        with pytest.raises(ValueError, match=f"test_fraction must be in \\(0, 1\\), got {fraction}"):
            split(frame, fraction)
    with pytest.raises(ValueError, match="item_fraction must be in"):
        cold_item_split(frame, fraction)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        leave_last_n(_log(), n=0)
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['timestamp'\]"):
        per_user_temporal_split(_log().drop("timestamp"))
    with pytest.raises(ValueError, match="n_negatives must be >= 1, got 0"):
        sample_negatives(_log(), pl.DataFrame({"item_id": [1]}), n_negatives=0, seed=0)
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['item_id'\]"):
        sample_negatives(_log(), pl.DataFrame({"id": [1]}), n_negatives=1, seed=0)


def test_negatives_avoid_positives_and_excluded_pairs_and_repeat_under_a_seed():
    frame = _log()
    items = pl.DataFrame({"item_id": np.arange(60)})  # 10 items nobody saw
    train, test = per_user_temporal_split(frame)
    out = sample_negatives(test, items, n_negatives=20, seed=0, exclude=train)
    positives = test.filter(pl.col("label") == 1.0)
    assert out.select("user_id", "item_id").rows() == positives.select("user_id", "item_id").rows()
    assert out.schema["candidates"] == pl.List(pl.Int64)
    train_pairs = set(train.select("user_id", "item_id").iter_rows())
    test_positive_pairs = set(positives.select("user_id", "item_id").iter_rows())
    for user, item, candidates in out.iter_rows():
        assert len(candidates) == 20 == len(set(candidates))
        assert item not in candidates
        assert all(0 <= c < 60 for c in candidates)
        assert not any((user, c) in train_pairs or (user, c) in test_positive_pairs for c in candidates)
    assert out.height == 30
    assert_frame_equal(out, sample_negatives(test, items, n_negatives=20, seed=0, exclude=train))
    assert not out.equals(sample_negatives(test, items, n_negatives=20, seed=1, exclude=train))


def test_negatives_can_take_every_allowed_item_and_refuse_more():
    frame = pl.DataFrame(
        {"user_id": [1, 1, 2], "item_id": [0, 1, 0], "label": [1.0, 1.0, 1.0], "timestamp": [1, 2, 3]}
    )
    items = pl.DataFrame({"item_id": [0, 1, 2, 3, 4]})
    out = sample_negatives(frame, items, n_negatives=3, seed=0)
    first, second, third = (sorted(c) for c in out["candidates"])
    assert first == second == [2, 3, 4]  # user 1: every item but its positives 0 and 1
    assert len(third) == 3 and set(third) < {1, 2, 3, 4}
    with pytest.raises(
        ValueError, match=r"1 user\(s\) have fewer than n_negatives=4 unclicked items.*'user_id': 1"
    ):
        sample_negatives(frame, items, n_negatives=4, seed=0)


def test_no_positives_give_no_rows():
    frame = pl.DataFrame({"user_id": [1], "item_id": [0], "label": [0.0], "timestamp": [1]})
    out = sample_negatives(frame, pl.DataFrame({"item_id": [0, 1]}), n_negatives=1, seed=0)
    assert out.height == 0
    assert out.schema == pl.Schema(
        {"user_id": pl.Int64, "item_id": pl.Int64, "candidates": pl.List(pl.Int64)}
    )
