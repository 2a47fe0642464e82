"""CUPED variance reduction and the sample-ratio-mismatch check."""

from dataclasses import dataclass

import numpy as np
from scipy import stats

from icg_rec.errors import IcgRecError


@dataclass
class SRMResult:
    """Chi-square goodness of fit of observed arm sizes to the planned split."""

    chi2: float  # statistic
    p_value: float  # under the planned split
    mismatch: bool  # p_value < threshold: do not trust the experiment's results


def cuped_theta(y: np.ndarray, x: np.ndarray) -> float:
    """cov(y, x) / var(x): the CUPED coefficient of the pre-period covariate `x` for metric `y`."""
    y, x = _paired(y, x)
    var_x = x.var(ddof=1)
    if var_x == 0:
        raise IcgRecError("the pre-period covariate is constant: CUPED cannot use it")
    return float(np.cov(y, x, ddof=1)[0, 1] / var_x)


def cuped_adjust(y: np.ndarray, x: np.ndarray, theta: float | None = None) -> np.ndarray:
    """y - theta (x - mean(x)); same mean as y, variance reduced by corr(y, x)^2.

    Args:
        y: in-experiment metric per unit, shape (n,).
        x: pre-period metric per unit, shape (n,).
        theta: pooled coefficient; pass the one fitted on both arms together, else it is fitted here.

    Returns:
        The adjusted metric, shape (n,).
    """
    y, x = _paired(y, x)
    theta = cuped_theta(y, x) if theta is None else theta
    return y - theta * (x - x.mean())


def variance_reduction(y: np.ndarray, x: np.ndarray) -> float:
    """The share of y's variance CUPED removes: corr(y, x)^2."""
    y, x = _paired(y, x)
    return float(np.corrcoef(y, x)[0, 1] ** 2)


def srm_check(observed: dict[str, int], planned: dict[str, float], threshold: float = 0.001) -> SRMResult:
    """Sample-ratio-mismatch test.

    Args:
        observed: units seen per arm.
        planned: planned weight per arm (same arm names, summing to 1).
        threshold: p-value under which the split is declared broken (0.001 is the usual guard).

    Returns:
        The chi-square statistic, its p-value and the verdict.
    """
    if set(observed) != set(planned):
        raise IcgRecError(f"observed arms {sorted(observed)} differ from planned arms {sorted(planned)}")
    names = sorted(planned)
    counts = np.array([observed[n] for n in names], dtype=np.float64)
    weights = np.array([planned[n] for n in names], dtype=np.float64)
    if abs(weights.sum() - 1) > 1e-9 or (weights <= 0).any():
        raise IcgRecError(f"planned weights {planned} must be positive and sum to 1")
    chi2, p_value = stats.chisquare(counts, counts.sum() * weights)
    return SRMResult(chi2=float(chi2), p_value=float(p_value), mismatch=bool(p_value < threshold))


def _paired(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if y.shape != x.shape or y.ndim != 1 or len(y) < 2:
        raise IcgRecError(f"y {y.shape} and x {x.shape} must be 1-d, of equal length >= 2")
    if not (np.isfinite(y).all() and np.isfinite(x).all()):
        raise IcgRecError("y and x must be finite (no NaN)")
    return y, x
