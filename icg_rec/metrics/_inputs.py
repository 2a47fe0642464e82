"""Boundary checks shared by the metrics: convert to numpy once, refuse bad values with a clear error."""

from typing import Any

import numpy as np

from icg_rec.errors import SchemaError


def to_numpy(name: str, values: Any) -> np.ndarray:
    """Converts a numpy array, list, polars/pandas Series or torch tensor to a 1-D numpy array.

    Args:
        name: argument name, used in error messages.
        values: the input.

    Returns:
        A 1-D numpy array (not copied where numpy allows it).
    """
    if hasattr(values, "detach"):  # torch tensor; checked by attribute so metrics never import torch
        values = values.detach().cpu().numpy()
    elif hasattr(values, "to_numpy"):  # polars / pandas Series
        values = values.to_numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise SchemaError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def check_lengths(**arrays: np.ndarray | None) -> int:
    """Returns the common length of the given arrays (None entries are ignored), or raises."""
    lengths = {name: len(a) for name, a in arrays.items() if a is not None}
    if len(set(lengths.values())) > 1:
        raise SchemaError(f"inputs must have the same length, got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise SchemaError(f"inputs are empty: {sorted(lengths)}")
    return n


def _check_finite(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise SchemaError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if array.size and not (np.isfinite(array.min()) and np.isfinite(array.max())):  # NaN/inf reach min or max
        bad = np.flatnonzero(~np.isfinite(array))
        raise SchemaError(
            f"{name} hold {len(bad)} NaN/inf value(s), first at row(s) {bad[:5].tolist()}; expected finite numbers"
        )
    return array


def labels_array(values: Any) -> np.ndarray:
    """Binary labels as a bool array; raises unless every value is 0 or 1 (so NaN too)."""
    array = to_numpy("labels", values)
    if array.dtype == bool:
        return array
    if array.dtype.kind not in "iuf":
        raise SchemaError(f"labels must be numeric 0/1, got dtype {array.dtype}")
    positive = array == 1
    binary = positive | (array == 0)
    if not binary.all():
        bad = np.flatnonzero(~binary)
        raise SchemaError(
            f"labels must be 0 or 1, got {array[bad[:5]].tolist()} at row(s) {bad[:5].tolist()}"
        )
    return positive


def scores_array(values: Any) -> np.ndarray:
    """Finite scores as float64."""
    return _check_finite("scores", to_numpy("scores", values))


def probs_array(values: Any) -> np.ndarray:
    """Probabilities as float64; raises unless every value is finite and in [0, 1]."""
    array = _check_finite("probs", to_numpy("probs", values))
    if ((array < 0.0) | (array > 1.0)).any():
        bad = np.flatnonzero((array < 0.0) | (array > 1.0))
        raise SchemaError(
            f"probs must lie in [0, 1], got {array[bad[:5]].tolist()} at row(s) {bad[:5].tolist()}"
        )
    return array


def weights_array(values: Any | None) -> np.ndarray | None:
    """Sample weights as float64 divided by their largest (None stays None); raises unless finite and >= 0.

    Every weighted metric here is invariant to the scale of the weights, and the rescaling keeps their
    sums and pairwise products finite (weights of 1e200 would overflow to inf, then NaN).
    """
    if values is None:
        return None
    array = _check_finite("weights", to_numpy("weights", values))
    if (array < 0.0).any():
        bad = np.flatnonzero(array < 0.0)
        raise SchemaError(f"weights must be >= 0, got {array[bad[:5]].tolist()} at row(s) {bad[:5].tolist()}")
    top = array.max() if array.size else 0.0
    return array / top if top > 0.0 else array


def groups_array(values: Any) -> np.ndarray:
    """Group (user) ids; raises on NaN ids, which polars nulls become."""
    array = to_numpy("groups", values)
    if array.dtype.kind == "f" and np.isnan(array).any():
        bad = np.flatnonzero(np.isnan(array))
        raise SchemaError(f"groups hold {len(bad)} missing id(s), first at row(s) {bad[:5].tolist()}")
    if array.dtype.kind == "O" and any(v is None for v in array):
        raise SchemaError("groups hold missing (None) ids")
    return array


def dense_ids(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Maps group ids to 0..n_groups-1 (in sorted id order); returns (ids int64, n_groups)."""
    if groups.dtype.kind in "iu":
        low = groups.min()
        span = int(groups.max()) - int(low) + 1
        if span <= 2 * len(groups):  # compact integer ids: O(n) relabelling, no sort
            offset = (groups - low).astype(np.int64)
            present = np.bincount(offset, minlength=span) > 0
            relabel = np.cumsum(present) - 1
            return relabel[offset], int(present.sum())
    uniques, inverse = np.unique(groups, return_inverse=True)
    return inverse.astype(np.int64, copy=False), len(uniques)
