"""The checks every estimator repeats: required columns, fitted state, and ids -> rows of a sorted table."""

from collections.abc import Sequence

import numpy as np
import polars as pl

from icg_rec.errors import SchemaError


def check_columns(frame: pl.DataFrame, needed: Sequence[str], what: str) -> None:
    """Raises SchemaError naming the columns of `needed` that `frame` lacks.

    Args:
        frame: the frame to check.
        needed: column names it must have.
        what: how the error names the frame, e.g. "interactions".
    """
    if missing := [c for c in needed if c not in frame.columns]:
        raise SchemaError(
            f"{what} is missing column(s) {missing}; expected {list(needed)}, got {frame.columns}"
        )


def check_fitted(estimator: object, attribute: str) -> None:
    """Raises ValueError when `estimator` has no `attribute` yet (set by its fit or load)."""
    if not hasattr(estimator, attribute):
        raise ValueError(f"{type(estimator).__name__} is not fitted: call fit() or load() first")


def lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `ids` in the ascending array `sorted_ids`, and which of them are there at all.

    Args:
        sorted_ids: (n,) ascending, unique.
        ids: (m,) the ids to look up.

    Returns:
        `(positions, known)`: (m,) int64 positions in 0..n-1 (meaningful only where known; 0 when
        `sorted_ids` is empty) and (m,) bool, True where `sorted_ids[positions] == ids`.
    """
    ids = np.asarray(ids)
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    positions = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
    return positions.astype(np.int64), sorted_ids[positions] == ids


def table_rows(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """1-based rows of `ids` in `sorted_ids` (an embedding table's rows), 0 where an id is unknown."""
    positions, known = lookup(sorted_ids, ids)
    return np.where(known, positions + 1, 0)
