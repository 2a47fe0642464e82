"""Column contracts for the three frames icg_rec passes around (polars), and their validators."""

from dataclasses import dataclass

import polars as pl

from icg_rec.errors import SchemaError

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
    "cover_id": pl.Int64(),  # which cover variant was shown
    "propensity": pl.Float64(),  # probability the logging policy had of showing that cover, in (0, 1]
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


# Unix seconds accepted as timestamps: [1970-01-01, 2100-01-01). Larger values are most likely
# milliseconds, negative ones a parsing error.
TIMESTAMP_RANGE: tuple[int, int] = (0, 4_102_444_800)
# An impression is identified by (user, item, time): two rows with the same key are duplicates.
INTERACTION_KEY: list[str] = ["user_id", "item_id", "timestamp"]
_SAMPLE_ROWS = 5  # offending rows quoted in an error message


def validate_interactions(
    frame: pl.DataFrame, items: pl.DataFrame | None = None, users: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Checks an interactions frame against INTERACTIONS_SCHEMA; extra columns are allowed.

    Args:
        frame: one row per impression (user_id, item_id, label, timestamp, optional weight, rating,
            cover_id, propensity).
        items: if given, every item_id must appear in its item_id column.
        users: if given, every user_id must appear in its user_id column.

    Returns:
        The frame, unchanged.

    Raises:
        SchemaError: a missing column, a wrong dtype, nulls, a NaN label, a label outside {0, 1},
            a timestamp outside TIMESTAMP_RANGE, a bad weight or rating, a propensity outside (0, 1] or
            without a cover_id, duplicate
            (user_id, item_id, timestamp) rows, or an id unknown to `items`/`users`. The message names
            the column, what was expected, how many rows offend and quotes a few of them.
    """
    _check_columns("interactions", frame, INTERACTIONS_SCHEMA, INTERACTIONS_OPTIONAL)
    _check_no_nulls("interactions", frame, [*INTERACTIONS_SCHEMA, *INTERACTIONS_OPTIONAL])
    label, timestamp = pl.col("label"), pl.col("timestamp")
    _check_rows("interactions", frame, "label", label.is_nan(), "a number, found NaN")
    _check_rows("interactions", frame, "label", ~label.is_in([0.0, 1.0]), "1.0 (click) or 0.0 (not clicked)")
    low, high = TIMESTAMP_RANGE
    _check_rows(
        "interactions",
        frame,
        "timestamp",
        (timestamp < low) | (timestamp >= high),
        f"unix seconds in [{low}, {high}) (1970 to 2100)",
    )
    if "weight" in frame.columns:
        weight = pl.col("weight")
        _check_rows("interactions", frame, "weight", ~weight.is_finite() | (weight < 0), "finite and >= 0")
    if "rating" in frame.columns:
        _check_rows("interactions", frame, "rating", ~pl.col("rating").is_finite(), "a finite number")
    if "propensity" in frame.columns:
        if "cover_id" not in frame.columns:
            raise SchemaError(
                "interactions have a propensity column but no cover_id: a propensity is the probability "
                "of showing one cover, so the log must say which cover was shown"
            )
        p = pl.col("propensity")
        _check_rows("interactions", frame, "propensity", ~p.is_finite() | (p <= 0) | (p > 1), "in (0, 1]")
    _check_rows(
        "interactions",
        frame,
        "+".join(INTERACTION_KEY),
        pl.struct(INTERACTION_KEY).is_duplicated(),
        "unique (user_id, item_id, timestamp) rows, found duplicates",
    )
    if items is not None:
        _check_known_ids("interactions", frame, "item_id", items, "items")
    if users is not None:
        _check_known_ids("interactions", frame, "user_id", users, "users")
    return frame


def validate_items(frame: pl.DataFrame) -> pl.DataFrame:
    """Checks an items frame against ITEMS_SCHEMA; extra columns are allowed.

    Args:
        frame: one row per item (item_id, title, text, image_path; image_path null = no cover).

    Returns:
        The frame, unchanged.

    Raises:
        SchemaError: a missing column, a wrong dtype, a null item_id/title/text, or a repeated item_id.
    """
    _check_columns("items", frame, ITEMS_SCHEMA, {})
    _check_no_nulls("items", frame, ["item_id", "title", "text"])
    _check_rows("items", frame, "item_id", pl.col("item_id").is_duplicated(), "unique ids, found repeats")
    return frame


def validate_users(frame: pl.DataFrame) -> pl.DataFrame:
    """Checks a users frame against USERS_SCHEMA; extra columns are allowed.

    Args:
        frame: one row per user.

    Returns:
        The frame, unchanged.

    Raises:
        SchemaError: a missing user_id column, a wrong dtype, a null or a repeated user_id.
    """
    _check_columns("users", frame, USERS_SCHEMA, {})
    _check_no_nulls("users", frame, ["user_id"])
    _check_rows("users", frame, "user_id", pl.col("user_id").is_duplicated(), "unique ids, found repeats")
    return frame


def validate_dataset(dataset: Dataset) -> Dataset:
    """Validates the three frames of a Dataset and that every interaction refers to a known user and item.

    Args:
        dataset: the dataset to check.

    Returns:
        The dataset, unchanged.

    Raises:
        SchemaError: as raised by validate_items, validate_users and validate_interactions.
    """
    validate_items(dataset.items)
    validate_users(dataset.users)
    validate_interactions(dataset.interactions, items=dataset.items, users=dataset.users)
    return dataset


def _check_columns(
    what: str, frame: pl.DataFrame, required: dict[str, pl.DataType], optional: dict[str, pl.DataType]
) -> None:
    if missing := [name for name in required if name not in frame.columns]:
        raise SchemaError(
            f"{what} are missing column(s) {missing}; expected {list(required)}, got {frame.columns}"
        )
    expected = {**required, **{k: v for k, v in optional.items() if k in frame.columns}}
    wrong = [
        f"{what}.{name}: expected {dtype}, got {frame.schema[name]} (first values: {frame[name].head(_SAMPLE_ROWS).to_list()})"
        for name, dtype in expected.items()
        if frame.schema[name] != dtype
    ]
    if wrong:
        raise SchemaError("wrong column type(s): " + "; ".join(wrong))


def _check_no_nulls(what: str, frame: pl.DataFrame, columns: list[str]) -> None:
    for name in columns:
        if name in frame.columns:
            _check_rows(what, frame, name, pl.col(name).is_null(), f"{frame.schema[name]} without nulls")


def _check_rows(what: str, frame: pl.DataFrame, column: str, bad: pl.Expr, expected: str) -> None:
    """Raises SchemaError quoting the rows where `bad` holds."""
    offending = frame.filter(bad)
    if offending.height:
        dtype = f" ({frame.schema[column]})" if column in frame.columns else ""
        raise SchemaError(
            f"{what}.{column}{dtype}: expected {expected}; {offending.height} of {frame.height} row(s) offend, "
            f"e.g. {offending.head(_SAMPLE_ROWS).to_dicts()}"
        )


def _check_known_ids(what: str, frame: pl.DataFrame, column: str, known: pl.DataFrame, source: str) -> None:
    if column not in known.columns:
        raise SchemaError(
            f"{source} has no {column} column to check {what}.{column} against; got {known.columns}"
        )
    _check_rows(
        what,
        frame,
        column,
        ~pl.col(column).is_in(known[column].implode()),
        f"ids present in {source}.{column}, found unknown ids",
    )
