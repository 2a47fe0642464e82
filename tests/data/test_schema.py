import polars as pl
import pytest

from icg_rec.data.schema import (
    Dataset,
    validate_dataset,
    validate_interactions,
    validate_items,
    validate_users,
)
from icg_rec.errors import SchemaError


def _interactions(**columns) -> pl.DataFrame:
    base = {
        "user_id": [1, 1, 2],
        "item_id": [10, 11, 10],
        "label": [1.0, 0.0, 1.0],
        "timestamp": [1_000, 2_000, 3_000],
        "weight": [1.0, 0.5, 2.0],
    }
    return pl.DataFrame({**base, **columns})


ITEMS = pl.DataFrame(
    {"item_id": [10, 11], "title": ["a", "b"], "text": ["x", ""], "image_path": ["/p/10.jpg", None]}
)
USERS = pl.DataFrame({"user_id": [1, 2]})


def test_valid_frames_are_returned_unchanged():
    frame = _interactions()
    assert validate_interactions(frame, items=ITEMS, users=USERS) is frame
    assert validate_items(ITEMS) is ITEMS
    assert validate_users(USERS) is USERS
    dataset = Dataset("tiny", frame, ITEMS, USERS)
    assert validate_dataset(dataset) is dataset


def test_extra_columns_and_a_rating_are_allowed():
    validate_interactions(_interactions(rating=[4.0, 2.5, 5.0], split=["a", "b", "c"]))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            _interactions().drop("label"),
            r"interactions are missing column\(s\) \['label'\]; expected \['user_id', 'item_id', 'label', 'timestamp'\]",
        ),
        (
            _interactions().with_columns(pl.col("user_id").cast(pl.Int32)),
            r"interactions.user_id: expected Int64, got Int32 \(first values: \[1, 1, 2\]\)",
        ),
        (
            _interactions(timestamp=["1", "2", "3"]),
            r"interactions.timestamp: expected Int64, got String",
        ),
        (
            _interactions(weight=[1, 1, 1]),
            r"interactions.weight: expected Float64, got Int64",
        ),
        (
            _interactions(label=[1.0, float("nan"), 0.0]),
            r"interactions.label \(Float64\): expected a number, found NaN; 1 of 3 row\(s\).*'item_id': 11, 'label': nan",
        ),
        (
            _interactions(label=[1.0, 2.0, 0.0]),
            r"interactions.label \(Float64\): expected 1.0 \(click\) or 0.0 \(not clicked\); 1 of 3.*'label': 2.0",
        ),
        (
            _interactions(label=[1.0, None, 0.0]),
            r"interactions.label \(Float64\): expected Float64 without nulls; 1 of 3.*'label': None",
        ),
        (
            _interactions(timestamp=[1_000, 1_600_000_000_000, 3_000]),
            r"interactions.timestamp \(Int64\): expected unix seconds in \[0, 4102444800\).*'timestamp': 1600000000000",
        ),
        (
            _interactions(timestamp=[-5, 2_000, 3_000]),
            r"interactions.timestamp \(Int64\): expected unix seconds.*'timestamp': -5",
        ),
        (
            _interactions(weight=[1.0, -0.5, float("inf")]),
            r"interactions.weight \(Float64\): expected finite and >= 0; 2 of 3",
        ),
        (
            _interactions(rating=[4.0, float("nan"), 3.0]),
            r"interactions.rating \(Float64\): expected a finite number; 1 of 3",
        ),
        (
            _interactions(item_id=[10, 11, 10], user_id=[1, 2, 1], timestamp=[5, 5, 5]),
            r"interactions.user_id\+item_id\+timestamp: expected unique \(user_id, item_id, timestamp\) rows, "
            r"found duplicates; 2 of 3",
        ),
    ],
)
def test_bad_interactions_are_refused_with_column_expectation_and_sample(frame, message):
    with pytest.raises(SchemaError, match=message):
        validate_interactions(frame)


def test_unknown_item_and_user_ids_are_reported():
    frame = _interactions(item_id=[10, 12, 10])
    with pytest.raises(
        SchemaError,
        match=r"interactions.item_id \(Int64\): expected ids present in items.item_id.*'item_id': 12",
    ):
        validate_interactions(frame, items=ITEMS)
    with pytest.raises(
        SchemaError,
        match=r"interactions.user_id \(Int64\): expected ids present in users.user_id.*'user_id': 2",
    ):
        validate_interactions(_interactions(), users=USERS.filter(pl.col("user_id") == 1))
    with pytest.raises(SchemaError, match=r"items has no item_id column to check interactions.item_id"):
        validate_interactions(_interactions(), items=USERS)


def test_same_user_item_at_different_times_is_not_a_duplicate():
    validate_interactions(_interactions(item_id=[10, 10, 10]))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (ITEMS.drop("text"), r"items are missing column\(s\) \['text'\]"),
        (
            ITEMS.with_columns(pl.col("image_path").cast(pl.Categorical)),
            r"items.image_path: expected String, got Categorical",
        ),
        (
            ITEMS.with_columns(item_id=pl.Series([10, 10])),
            r"items.item_id \(Int64\): expected unique ids, found repeats; 2 of 2",
        ),
        (
            ITEMS.with_columns(title=pl.Series(["a", None])),
            r"items.title \(String\): expected String without nulls.*'item_id': 11",
        ),
    ],
)
def test_bad_items_are_refused(frame, message):
    with pytest.raises(SchemaError, match=message):
        validate_items(frame)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"id": [1]}), r"users are missing column\(s\) \['user_id'\]"),
        (pl.DataFrame({"user_id": [1.0]}), r"users.user_id: expected Int64, got Float64"),
        (pl.DataFrame({"user_id": [1, 1]}), r"users.user_id \(Int64\): expected unique ids, found repeats"),
        (pl.DataFrame({"user_id": [1, None]}), r"users.user_id \(Int64\): expected Int64 without nulls"),
    ],
)
def test_bad_users_are_refused(frame, message):
    with pytest.raises(SchemaError, match=message):
        validate_users(frame)


def test_validate_dataset_checks_references():
    frame = _interactions(user_id=[1, 1, 3])
    with pytest.raises(SchemaError, match=r"interactions.user_id.*unknown ids; 1 of 3.*'user_id': 3"):
        validate_dataset(Dataset("tiny", frame, ITEMS, USERS))


def test_cover_id_and_propensity_are_optional_columns():
    validate_interactions(_interactions(cover_id=[0, 1, 0], propensity=[0.5, 1.0, 0.25]))
    validate_interactions(
        _interactions(cover_id=[0, 1, 0])
    )  # shown covers without propensities: fine for lift
    with pytest.raises(SchemaError, match="a propensity column but no cover_id"):
        validate_interactions(_interactions(propensity=[0.5, 1.0, 0.25]))
    with pytest.raises(SchemaError, match=r"interactions.propensity \(Float64\): expected in \(0, 1\]"):
        validate_interactions(_interactions(cover_id=[0, 1, 0], propensity=[0.5, 0.0, 0.25]))
    with pytest.raises(SchemaError, match=r"interactions.cover_id: expected Int64, got Float64"):
        validate_interactions(_interactions(cover_id=[0.0, 1.0, 0.0]))
