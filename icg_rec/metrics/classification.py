"""Click-prediction metrics: exact tie-aware AUC, grouped (per-user) AUC, logloss, RelaImpr.

All functions take numpy arrays, lists, polars Series or torch tensors, and refuse NaNs, mismatched
lengths and non-binary labels with a SchemaError. Ties count one half, as in scikit-learn; sample
weights weight each (positive, negative) pair by the product of the two rows' weights.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from icg_rec.errors import SchemaError
from icg_rec.metrics import _inputs
from icg_rec.metrics._mannwhitney import SortedRows, count_terms, score_keys, sort_rows, weighted_terms


@dataclass(frozen=True)
class GAUC:
    """A grouped AUC and how many groups went into it."""

    value: float  # mean of the per-group AUCs (weighting depends on the function that made it)
    n_groups: int  # groups averaged: those holding both classes
    n_skipped: int  # groups left out because all their rows (or all their weight) are one class


def auc(labels: Any, scores: Any, weights: Any | None = None) -> float:
    """Area under the ROC curve, exact, ties counted one half (weighted Mann-Whitney U).

    Args:
        labels: (n,) 0/1 labels.
        scores: (n,) finite scores, higher = more likely positive (probabilities or logits).
        weights: optional (n,) non-negative sample weights.

    Returns:
        The AUC; equals `sklearn.metrics.roc_auc_score(labels, scores, sample_weight=weights)`.
    """
    y, s, w = _inputs.labels_array(labels), _inputs.scores_array(scores), _inputs.weights_array(weights)
    _inputs.check_lengths(labels=y, scores=s, weights=w)
    if w is None:
        twice_u, n_pos, n_neg = _count_auc_terms(y, s)
    else:
        rows = grouped_rows(y, s, np.zeros(len(s), np.int64), 1, with_order=True)
        twice_u, n_pos, n_neg = (t[0] for t in weighted_terms(rows, w[None, rows.order]))
    if n_pos[0] == 0 or n_neg[0] == 0:
        raise SchemaError(
            f"labels hold a single class (positive weight {float(n_pos[0])}, negative weight "
            f"{float(n_neg[0])}): AUC needs both"
        )
    return float(twice_u[0] / (2.0 * n_pos[0] * n_neg[0]))


def gauc(labels: Any, scores: Any, groups: Any, weights: Any | None = None) -> GAUC:
    """Grouped AUC: per-group (per-user) AUC, averaged with each group weighted by its impressions.

    A group's weight is its row count, or the sum of its rows' weights when `weights` is given;
    groups holding one class only are skipped and counted in `n_skipped`.

    Args:
        labels: (n,) 0/1 labels.
        scores: (n,) finite scores.
        groups: (n,) group ids (users), any sortable type.
        weights: optional (n,) non-negative sample weights.

    Returns:
        The GAUC (value, n_groups averaged, n_skipped).
    """
    per_group, group_weight, valid = _per_group_auc(labels, scores, groups, weights)
    value = np.sum(per_group[valid] * group_weight[valid]) / np.sum(group_weight[valid])
    return GAUC(float(value), int(valid.sum()), int((~valid).sum()))


def uauc(labels: Any, scores: Any, groups: Any, weights: Any | None = None) -> GAUC:
    """User AUC: the unweighted mean of per-group AUCs over groups holding both classes.

    Args:
        labels: (n,) 0/1 labels.
        scores: (n,) finite scores.
        groups: (n,) group ids (users).
        weights: optional (n,) non-negative sample weights, used inside each group's AUC.

    Returns:
        The GAUC (value, n_groups averaged, n_skipped).
    """
    per_group, _, valid = _per_group_auc(labels, scores, groups, weights)
    return GAUC(float(per_group[valid].mean()), int(valid.sum()), int((~valid).sum()))


def logloss(labels: Any, probs: Any, weights: Any | None = None) -> float:
    """Mean negative log-likelihood of Bernoulli labels, natural log.

    Probabilities are clipped to [eps, 1 - eps] (eps of float64) so that a confident miss costs
    about 36 nats rather than infinity; scikit-learn's `log_loss` does the same.

    Args:
        labels: (n,) 0/1 labels.
        probs: (n,) predicted click probabilities in [0, 1].
        weights: optional (n,) non-negative sample weights.

    Returns:
        The (weighted) mean logloss.
    """
    y, p, w = _inputs.labels_array(labels), _inputs.probs_array(probs), _inputs.weights_array(weights)
    _inputs.check_lengths(labels=y, probs=p, weights=w)
    if w is not None and w.sum() == 0:
        raise SchemaError("weights sum to 0: logloss needs some weight")
    return float(np.average(row_logloss(y, p), weights=w))


def relaimpr(auc_model: float, auc_base: float) -> float | None:
    """DIN's relative improvement of an AUC over a baseline, as a fraction (0.05 = +5%).

    RelaImpr = (AUC_model - 0.5) / (AUC_base - 0.5) - 1: the gain measured above random guessing. It is
    undefined when the baseline is no better than random (AUC_base <= 0.5): the ratio then flips sign or
    divides by zero (a better model would read as -400%).

    Args:
        auc_model: AUC of the model under test.
        auc_base: AUC of the baseline.

    Returns:
        The relative improvement (multiply by 100 for percent), or None where it is undefined.
    """
    for name, value in (("auc_model", auc_model), ("auc_base", auc_base)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be an AUC in [0, 1], got {value}")
    if auc_base <= 0.5:
        return None
    return (auc_model - 0.5) / (auc_base - 0.5) - 1.0


def format_relaimpr(value: float | None) -> str:
    """RelaImpr for a report: "+5.00%", or "undefined (baseline AUC <= 0.5)"."""
    return "undefined (baseline AUC <= 0.5)" if value is None else f"{value:+.2%}"


def row_logloss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(n,) per-row logloss of validated bool labels and [0, 1] probabilities, clipped as `logloss`."""
    eps = np.finfo(np.float64).eps
    p = np.clip(p, eps, 1.0 - eps)
    return -np.log(np.where(y, p, 1.0 - p))


def _count_auc_terms(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unweighted (twice_u, n_pos, n_neg), each (1,), sorting the 63-bit score keys of each sign apart.

    Keys keep 63 bits of a score only within one sign, so negative and non-negative scores are
    sorted separately; every non-negative positive then beats every negative-scored negative.
    """
    starts = np.zeros(1, np.int64)
    negative = s < 0
    if negative.all() or not negative.any():
        return count_terms(sort_rows(score_keys(s), y, starts, with_order=False))
    u_lo, pos_lo, neg_lo = count_terms(
        sort_rows(score_keys(s[negative]), y[negative], starts, with_order=False)
    )
    u_hi, pos_hi, neg_hi = count_terms(
        sort_rows(score_keys(s[~negative]), y[~negative], starts, with_order=False)
    )
    return u_lo + u_hi + 2 * pos_hi * neg_lo, pos_lo + pos_hi, neg_lo + neg_hi


def grouped_rows(
    y: np.ndarray, s: np.ndarray, group_ids: np.ndarray, n_groups: int, with_order: bool
) -> SortedRows:
    """Sorted rows for per-group AUCs: key = (group id | dense score rank), label in the low bit."""
    _, rank = np.unique(s, return_inverse=True)  # equal scores share a rank, across all groups
    rank_bits = max(int(rank.max()).bit_length(), 1)
    if (n_groups - 1).bit_length() + rank_bits > 63:
        raise SchemaError(f"too many rows ({len(s)}) and groups ({n_groups}) to pack in 64-bit sort keys")
    key_hi = (group_ids.astype(np.uint64) << np.uint64(rank_bits)) | rank.astype(np.uint64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(group_ids, minlength=n_groups))[:-1]])
    return sort_rows(key_hi, y, starts, with_order)


def _per_group_auc(
    labels: Any, scores: Any, groups: Any, weights: Any | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(auc, weight, valid), each (G,): per-group AUC, impression weight, and both-classes mask."""
    y, s, w = _inputs.labels_array(labels), _inputs.scores_array(scores), _inputs.weights_array(weights)
    g = _inputs.groups_array(groups)
    _inputs.check_lengths(labels=y, scores=s, groups=g, weights=w)
    group_ids, n_groups = _inputs.dense_ids(g)
    rows = grouped_rows(y, s, group_ids, n_groups, with_order=w is not None)
    if w is None:
        twice_u, w_pos, w_neg = count_terms(rows)
    else:
        twice_u, w_pos, w_neg = (t[0] for t in weighted_terms(rows, w[None, rows.order]))
    valid = (w_pos > 0) & (w_neg > 0)
    if not valid.any():
        raise SchemaError(f"none of the {n_groups} groups holds both classes: grouped AUC is undefined")
    per_group = np.divide(twice_u, 2.0 * w_pos * w_neg, out=np.zeros(n_groups), where=valid)
    return per_group, (w_pos + w_neg).astype(np.float64), valid
