"""Uncertainty for the metrics: user-level (cluster) bootstrap, paired between models, and DeLong's test.

Rows of one user are correlated, so the bootstrap resamples users, not rows: a replicate draws
n_users users with replacement and gives every row of a user drawn m times the weight m (the same
as copying the user's rows m times, for every metric here). The data are sorted once per model;
each replicate only re-weights the sorted rows, so B replicates cost O(B n) after one sort.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as scipy_stats

from icg_rec.errors import SchemaError
from icg_rec.metrics import _inputs
from icg_rec.metrics._mannwhitney import weighted_terms
from icg_rec.metrics.classification import auc, gauc, grouped_rows, logloss, row_logloss, uauc

Metric = Callable[..., Any]  # one of auc, gauc, uauc, logloss (or its name)
_Replicates = Callable[[np.ndarray], np.ndarray]  # (B, G) user multiplicities -> (B,) metric values

_CELLS_PER_CHUNK = 1 << 22  # replicates x rows per weight matrix (32 MiB of float64)


@dataclass(frozen=True)
class BootstrapResult:
    """A paired difference between two models' metric, with its bootstrap interval."""

    delta: float  # metric(scores_b) - metric(scores_a) on all rows
    ci95: tuple[float, float]  # 2.5% and 97.5% percentiles of the replicate deltas
    p_value: float  # two-sided: twice the smaller share of replicate deltas on either side of 0


@dataclass(frozen=True)
class BootstrapCI:
    """One model's metric with its bootstrap interval."""

    value: float  # the metric on all rows
    ci95: tuple[float, float]  # 2.5% and 97.5% percentiles of the replicate values


class DeLongResult(NamedTuple):
    """DeLong's test of AUC(b) - AUC(a); unpacks as (z, p_value)."""

    z: float  # (AUC_b - AUC_a) / its standard error
    p_value: float  # two-sided, normal approximation


def paired_bootstrap(
    labels: Any,
    scores_a: Any,
    scores_b: Any,
    groups: Any,
    metric: Metric | str,
    n_boot: int = 1000,
    seed: int = 0,
) -> BootstrapResult:
    """User-level paired bootstrap of metric(b) - metric(a): each replicate resamples users once
    and scores both models on the same resampled rows.

    Args:
        labels: (n,) 0/1 labels.
        scores_a: (n,) scores of model a (the baseline); probabilities for logloss.
        scores_b: (n,) scores of model b (the candidate), same rows.
        groups: (n,) user ids: the clusters resampled.
        metric: `auc`, `gauc`, `uauc` or `logloss` (the function or its name).
        n_boot: number of replicates, >= 2.
        seed: seed of the resampling.

    Returns:
        BootstrapResult(delta, ci95 (percentile interval), p_value). The p-value is
        min(1, 2 min((1 + #{d <= 0}) / (B + 1), (1 + #{d >= 0}) / (B + 1))) over the replicate
        deltas d: the percentile-bootstrap test of "no difference", never exactly 0.
    """
    fn, y, group_ids, n_groups, g = _common(
        labels, groups, metric, n_boot, scores_a=scores_a, scores_b=scores_b
    )
    rep_a = _replicates(fn, y, scores_a, group_ids, n_groups)
    rep_b = _replicates(fn, y, scores_b, group_ids, n_groups)
    deltas = _run(lambda m: rep_b(m) - rep_a(m), group_ids, n_groups, n_boot, seed)
    delta = _evaluate(fn, labels, scores_b, g) - _evaluate(fn, labels, scores_a, g)
    tails = min(np.sum(deltas <= 0), np.sum(deltas >= 0))
    p_value = min(1.0, 2.0 * (1.0 + float(tails)) / (n_boot + 1.0))
    return BootstrapResult(delta, _percentiles(deltas), p_value)


def bootstrap_ci(
    labels: Any, scores: Any, groups: Any, metric: Metric | str, n_boot: int = 1000, seed: int = 0
) -> BootstrapCI:
    """User-level bootstrap percentile interval of one model's metric.

    Args:
        labels: (n,) 0/1 labels.
        scores: (n,) scores (probabilities for logloss).
        groups: (n,) user ids: the clusters resampled.
        metric: `auc`, `gauc`, `uauc` or `logloss` (the function or its name).
        n_boot: number of replicates, >= 2.
        seed: seed of the resampling.

    Returns:
        BootstrapCI(value on all rows, ci95).
    """
    fn, y, group_ids, n_groups, g = _common(labels, groups, metric, n_boot, scores=scores)
    values = _run(_replicates(fn, y, scores, group_ids, n_groups), group_ids, n_groups, n_boot, seed)
    return BootstrapCI(_evaluate(fn, labels, scores, g), _percentiles(values))


def delong_test(labels: Any, scores_a: Any, scores_b: Any) -> DeLongResult:
    """DeLong's test for two correlated AUCs on the same rows, O(n log n) (Sun & Xu 2014).

    Rows are treated as independent; with many rows per user, prefer `paired_bootstrap`.

    Args:
        labels: (n,) 0/1 labels.
        scores_a: (n,) scores of model a.
        scores_b: (n,) scores of model b.

    Returns:
        DeLongResult(z, p_value) for AUC(b) - AUC(a). Identical AUCs with zero variance (say, the
        same scores twice) give z = 0, p = 1.

    Raises:
        SchemaError: fewer than two positives or two negatives (the variance needs two of each).
    """
    y = _inputs.labels_array(labels)
    a, b = _inputs.scores_array(scores_a), _inputs.scores_array(scores_b)
    _inputs.check_lengths(labels=y, scores_a=a, scores_b=b)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise SchemaError(
            f"labels hold {m} positive(s) and {n} negative(s): DeLong's variance needs at least two of each"
        )
    v10, v01 = [], []  # per positive: share of negatives below it; per negative: share of positives above
    for s in (a, b):
        pos, neg = s[y], s[~y]
        mid = scipy_stats.rankdata(np.concatenate([pos, neg]))  # (m + n,) average ranks
        v10.append((mid[:m] - scipy_stats.rankdata(pos)) / n)
        v01.append(1.0 - (mid[m:] - scipy_stats.rankdata(neg)) / m)
    aucs = [v.mean() for v in v10]
    cov = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n  # (2, 2)
    var = cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]
    diff = aucs[1] - aucs[0]
    if var <= 0.0:
        return DeLongResult(0.0, 1.0) if diff == 0 else DeLongResult(float(np.copysign(np.inf, diff)), 0.0)
    z = diff / np.sqrt(var)
    return DeLongResult(float(z), float(2.0 * scipy_stats.norm.sf(abs(z))))


_METRICS = {"auc": auc, "gauc": gauc, "uauc": uauc, "logloss": logloss}


def _common(labels: Any, groups: Any, metric: Metric | str, n_boot: int, **scores: Any) -> tuple:
    """Validates the shared arguments; returns (metric fn, labels, dense group ids, n_groups, groups)."""
    fn = _METRICS.get(metric) if isinstance(metric, str) else metric
    if fn not in _METRICS.values():
        raise ValueError(
            f"metric must be one of {sorted(_METRICS)} (the function or its name), got {metric!r}"
        )
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    y, g = _inputs.labels_array(labels), _inputs.groups_array(groups)
    arrays = {name: _inputs.to_numpy(name, s) for name, s in scores.items()}
    _inputs.check_lengths(labels=y, groups=g, **arrays)
    group_ids, n_groups = _inputs.dense_ids(g)
    return fn, y, group_ids, n_groups, g


def _evaluate(fn: Metric, labels: Any, scores: Any, groups: np.ndarray) -> float:
    """The metric on all rows (its own validation runs here)."""
    value = fn(labels, scores, groups) if fn in (gauc, uauc) else fn(labels, scores)
    return float(value.value if fn in (gauc, uauc) else value)


def _replicates(fn: Metric, y: np.ndarray, scores: Any, group_ids: np.ndarray, n_groups: int) -> _Replicates:
    """Sorts once, returns the function that scores a batch of user multiplicities (B, G) -> (B,)."""
    if fn is logloss:
        losses = row_logloss(y, _inputs.probs_array(scores))
        user_loss = np.bincount(group_ids, weights=losses, minlength=n_groups)  # (G,)
        user_rows = np.bincount(group_ids, minlength=n_groups).astype(np.float64)  # (G,)
        return lambda m: (m @ user_loss) / (m @ user_rows)
    s = _inputs.scores_array(scores)
    if fn is auc:  # one group: the AUC over all rows
        rows = grouped_rows(y, s, np.zeros(len(s), np.int64), 1, with_order=True)
        sorted_groups = group_ids[rows.order]  # (n,) user of each sorted row
        return lambda m: _auc_values(*weighted_terms(rows, m[:, sorted_groups]))[:, 0]
    rows = grouped_rows(y, s, group_ids, n_groups, with_order=True)
    sorted_groups = group_ids[rows.order]

    def grouped_replicates(m: np.ndarray) -> np.ndarray:
        twice_u, w_pos, w_neg = weighted_terms(rows, m[:, sorted_groups])  # each (B, G)
        valid = (w_pos > 0) & (w_neg > 0)
        weight = valid * ((w_pos + w_neg) if fn is gauc else m)  # (B, G): a user drawn twice counts twice
        return np.sum(np.where(valid, _auc_values(twice_u, w_pos, w_neg), 0.0) * weight, axis=1) / weight.sum(
            axis=1
        )

    return grouped_replicates


def _run(replicate: _Replicates, group_ids: np.ndarray, n_groups: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) replicate values, drawn in chunks that keep the (chunk, n) weight matrix small."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // len(group_ids))
    uniform = np.full(n_groups, 1.0 / n_groups)
    values = []
    for start in range(0, n_boot, chunk):
        m = rng.multinomial(n_groups, uniform, size=min(chunk, n_boot - start)).astype(np.float64)  # (b, G)
        values.append(replicate(m))
    values = np.concatenate(values)
    if bad := int(np.isnan(values).sum()):
        raise SchemaError(
            f"{bad} of {n_boot} bootstrap replicates drew users of one class only ({n_groups} users): "
            "too few users for a user-level bootstrap of this metric"
        )
    return values


def _auc_values(twice_u: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray) -> np.ndarray:
    """AUCs from Mann-Whitney sums; NaN where a class has no weight."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return twice_u / (2.0 * w_pos * w_neg)


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(values, [0.025, 0.975])
    return float(lo), float(hi)
