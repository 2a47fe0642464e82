"""Calibration: predicted vs observed click-through rate in equal-width probability bins, and ECE."""

from typing import Any

import numpy as np
import polars as pl

from icg_rec.metrics import _inputs


def calibration_table(labels: Any, probs: Any, n_bins: int = 10) -> pl.DataFrame:
    """Per-bin mean predicted probability against the observed CTR, bins of equal width on [0, 1].

    Args:
        labels: (n,) 0/1 labels.
        probs: (n,) predicted click probabilities in [0, 1].
        n_bins: number of bins, >= 1; bin b holds probs in [b / n_bins, (b + 1) / n_bins), the last
            bin also holds 1.0. Edges are the float64 nearest to b / n_bins, so a probability written
            as b / n_bins (0.3 for b = 3 of 10) opens bin b; `np.linspace` edges (0.30000000000000004)
            would put it in bin b - 1.

    Returns:
        One row per bin: bin_lo, bin_hi, count, predicted (mean prob), observed (CTR); predicted
        and observed are null in empty bins.
    """
    y, p = _inputs.labels_array(labels), _inputs.probs_array(probs)
    _inputs.check_lengths(labels=y, probs=p)
    count, predicted, observed = _binned(y, p, n_bins)
    edges = _edges(n_bins)
    return pl.DataFrame(
        {
            "bin_lo": edges[:-1],
            "bin_hi": edges[1:],
            "count": count,
            "predicted": predicted,
            "observed": observed,
        }
    ).with_columns(pl.col("predicted", "observed").fill_nan(None))


def ece(labels: Any, probs: Any, n_bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (bin share of rows) x |predicted - observed|.

    Args:
        labels: (n,) 0/1 labels.
        probs: (n,) predicted click probabilities in [0, 1].
        n_bins: number of equal-width bins, >= 1 (as in `calibration_table`).

    Returns:
        The ECE, in [0, 1].
    """
    y, p = _inputs.labels_array(labels), _inputs.probs_array(probs)
    n = _inputs.check_lengths(labels=y, probs=p)
    count, predicted, observed = _binned(y, p, n_bins)
    filled = count > 0
    return float(np.sum(count[filled] / n * np.abs(predicted[filled] - observed[filled])))


def _binned(y: np.ndarray, p: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, mean prob, CTR), each (n_bins,); NaN means in empty bins."""
    bins = np.searchsorted(
        _edges(n_bins)[1:-1], p, side="right"
    )  # (n,) bin of each row; 1.0 goes to the last
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(bins, weights=p, minlength=n_bins) / count
        observed = np.bincount(bins, weights=y, minlength=n_bins) / count
    return count, predicted, observed


def _edges(n_bins: int) -> np.ndarray:
    """(n_bins + 1,) bin edges b / n_bins, each the float64 nearest to the exact fraction."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    return np.arange(n_bins + 1) / n_bins
