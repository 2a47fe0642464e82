"""Train/test splits of an interactions frame, and sampled negatives for top-k evaluation.

Time order is (timestamp, item_id), then the input order: ties in time are broken the same way on
every run. Random choices take a seed: same seed, same split.
"""

import numpy as np
import polars as pl

from icg_rec.errors import SchemaError
from icg_rec.validation import lookup

_EPS = 1e-9  # keeps floor(n * fraction) exact where the product lands a hair below an integer


def temporal_split(interactions: pl.DataFrame, test_fraction: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Global time cut: the last `test_fraction` of all rows by time are the test set.

    Args:
        interactions: frame with user_id, item_id and timestamp columns.
        test_fraction: share of rows in the test set, in (0, 1); floor(n * fraction) rows.

    Returns:
        (train, test), each sorted by time; every train row is no later than every test row.
    """
    _check_fraction("test_fraction", test_fraction)
    ordered = _require(interactions, ["user_id", "item_id", "timestamp"]).sort(
        ["timestamp", "item_id", "user_id"], maintain_order=True
    )
    n_train = ordered.height - _floor(ordered.height * test_fraction)
    return ordered.head(n_train), ordered.slice(n_train)


def per_user_temporal_split(
    interactions: pl.DataFrame, test_fraction: float = 0.2
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The warm protocol: each user's last `test_fraction` of rows by time are the test set.

    Args:
        interactions: frame with user_id, item_id and timestamp columns.
        test_fraction: share of each user's rows in the test set, in (0, 1); floor(n_user * fraction)
            rows, so a user with fewer than 1 / fraction rows has all of them in train.

    Returns:
        (train, test), each sorted by user then time.
    """
    _check_fraction("test_fraction", test_fraction)
    n_test = (pl.len().over("user_id") * test_fraction + _EPS).floor().cast(pl.Int64)
    return _split_user_tails(interactions, n_test)


def leave_last_n(interactions: pl.DataFrame, n: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each user's last `n` rows by time are the test set.

    Args:
        interactions: frame with user_id, item_id and timestamp columns.
        n: test rows per user, >= 1. A user with n or fewer rows has all of them in train.

    Returns:
        (train, test), each sorted by user then time.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    count = pl.len().over("user_id")
    return _split_user_tails(interactions, pl.when(count > n).then(n).otherwise(0))


def cold_item_split(
    interactions: pl.DataFrame, item_fraction: float = 0.2, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cold items: a random `item_fraction` of the interacted items is held out with all its rows.

    Users stay warm in general; a user whose every row is on a held-out item appears in test only.

    Args:
        interactions: frame with an item_id column.
        item_fraction: share of the distinct items held out, in (0, 1); floor(n_items * fraction).
        seed: seeds the item draw.

    Returns:
        (train, test) in input order; no item appears in both.
    """
    _check_fraction("item_fraction", item_fraction)
    items = _require(interactions, ["item_id"])["item_id"].unique().sort().to_numpy()
    held_out = np.random.default_rng(seed).choice(
        items, size=_floor(len(items) * item_fraction), replace=False
    )
    is_test = pl.col("item_id").is_in(pl.Series(held_out).implode())
    return interactions.filter(~is_test), interactions.filter(is_test)


def sample_negatives(
    interactions: pl.DataFrame,
    items: pl.DataFrame,
    n_negatives: int,
    seed: int,
    exclude: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Samples, for every positive (label 1) row, `n_negatives` distinct items the user never clicked.

    Args:
        interactions: frame with user_id, item_id, label and timestamp; its positives are the rows to
            evaluate and, per user, the items never sampled.
        items: the candidate pool (its item_id column).
        n_negatives: negatives per positive row.
        seed: seeds the draw.
        exclude: further (user_id, item_id) pairs never to sample, e.g. the training rows when
            `interactions` is the test set.

    Returns:
        One row per positive, sorted by user then time: user_id, item_id (the positive) and
        candidates (List[Int64], the n_negatives sampled item ids, without the positive).

    Raises:
        ValueError: some user has fewer than n_negatives items left to sample.
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    positives = (
        _require(interactions, ["user_id", "item_id", "label", "timestamp"])
        .filter(pl.col("label") == 1.0)
        .sort(["user_id", "timestamp", "item_id"], maintain_order=True)
    )
    if positives.height == 0:
        return positives.select("user_id", "item_id", pl.lit([], pl.List(pl.Int64)).alias("candidates"))
    pool = _require(items, ["item_id"])["item_id"].unique().sort().to_numpy()  # (n_items,)
    banned = positives.select("user_id", "item_id")
    if exclude is not None:
        banned = pl.concat([banned, _require(exclude, ["user_id", "item_id"]).select("user_id", "item_id")])
    fewest_allowed = _fewest_allowed(positives, banned, pool, n_negatives)
    user_ids = positives["user_id"].unique().sort().to_numpy()  # (n_users,)
    users = np.searchsorted(user_ids, positives["user_id"].to_numpy())  # (n_rows,) dense user index
    banned_keys = np.sort(np.append(_pair_keys(banned, user_ids, pool), -1))  # -1: never a key

    # Each row draws n_draws items with replacement and keeps its first n_negatives allowed, distinct
    # ones; n_draws is 1.2x the expected need of the user with the fewest allowed items, rows short of
    # n_negatives draw again. Rows go in chunks of about 4M draws.
    expected = len(pool) * np.sum(1.0 / np.arange(fewest_allowed - n_negatives + 1, fewest_allowed + 1))
    n_draws = int(1.2 * expected) + 16
    rng = np.random.default_rng(seed)
    picks = np.empty((len(users), n_negatives), dtype=np.int64)  # (n_rows, n_negatives) pool indices
    chunk = max(1, 2**22 // n_draws)
    for start in range(0, len(users), chunk):
        rows = np.arange(start, min(start + chunk, len(users)))  # rows still short of negatives
        while rows.size:
            draws = rng.integers(0, len(pool), size=(rows.size, n_draws))  # (n_rows_left, n_draws)
            allowed = _allowed_draws(users[rows], draws, len(pool), banned_keys)
            done = allowed.sum(axis=1) >= n_negatives
            first = np.argsort(~allowed[done], axis=1, kind="stable")[:, :n_negatives]  # allowed first
            picks[rows[done]] = np.take_along_axis(draws[done], first, axis=1)
            rows = rows[~done]
    return positives.select(
        "user_id",
        "item_id",
        pl.Series("candidates", pool[picks]).cast(pl.List(pl.Int64)),
    )


def _split_user_tails(interactions: pl.DataFrame, n_test: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Sorts by user then time and puts each user's last `n_test` rows in test."""
    ordered = _require(interactions, ["user_id", "item_id", "timestamp"]).sort(
        ["user_id", "timestamp", "item_id"], maintain_order=True
    )
    is_test = pl.int_range(pl.len()).over("user_id") >= pl.len().over("user_id") - n_test
    flagged = ordered.with_columns(is_test.alias("__test"))
    return (
        flagged.filter(~pl.col("__test")).drop("__test"),
        flagged.filter(pl.col("__test")).drop("__test"),
    )


def _pair_keys(pairs: pl.DataFrame, user_ids: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Encodes the (user_id, item_id) pairs whose user and item are both known as user * n_items + item."""
    users, items = pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy()
    user_index, user_known = lookup(user_ids, users)
    item_index, item_known = lookup(pool, items)
    known = user_known & item_known
    return user_index[known] * len(pool) + item_index[known]


def _is_member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """`np.isin` for a sorted, non-empty set, by binary search."""
    return lookup(sorted_set, values)[1]


def _allowed_draws(users: np.ndarray, draws: np.ndarray, n_items: int, banned_keys: np.ndarray) -> np.ndarray:
    """Marks the draws that are neither banned for their row's user nor a repeat of an earlier draw.

    Rows are checked in sorted order: with users ascending, the keys are then nearly sorted, which
    keeps the binary search in cache.
    """
    order = np.argsort(draws, axis=1, kind="stable")  # (n_rows, n_draws)
    ordered = np.take_along_axis(draws, order, axis=1)  # each row ascending
    bad = _is_member(users[:, None] * n_items + ordered, banned_keys)  # (n_rows, n_draws)
    bad[:, 1:] |= ordered[:, 1:] == ordered[:, :-1]  # repeats (the first occurrence stays allowed)
    allowed = np.empty(draws.shape, dtype=bool)
    np.put_along_axis(allowed, order, ~bad, axis=1)
    return allowed


def _fewest_allowed(positives: pl.DataFrame, banned: pl.DataFrame, pool: np.ndarray, n_negatives: int) -> int:
    """The smallest number of samplable items of any user with positives; raises if below n_negatives."""
    n_banned = (
        banned.filter(pl.col("item_id").is_in(pl.Series(pool).implode()))
        .unique()
        .group_by("user_id")
        .len("n_banned")
    )
    allowed = (
        positives.select(pl.col("user_id").unique())
        .join(n_banned, on="user_id", how="left")
        .select("user_id", (len(pool) - pl.col("n_banned").fill_null(0)).alias("n_allowed"))
    )
    if (short := allowed.filter(pl.col("n_allowed") < n_negatives)).height:
        raise ValueError(
            f"{short.height} user(s) have fewer than n_negatives={n_negatives} unclicked items among the "
            f"{len(pool)} candidates, e.g. {short.head(5).to_dicts()}"
        )
    return int(allowed["n_allowed"].min())


def _require(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    if missing := [name for name in columns if name not in frame.columns]:
        raise SchemaError(f"frame is missing column(s) {missing}; expected {columns}, got {frame.columns}")
    return frame


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def _floor(value: float) -> int:
    return int(np.floor(value + _EPS))
