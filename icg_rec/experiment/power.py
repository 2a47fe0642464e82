"""Sample size, power and minimum detectable effect for a CTR lift.

Two designs: (1) impression-level CTR as two independent proportions, with Cohen's arcsine effect size
h = 2 asin(sqrt p_t) - 2 asin(sqrt p_c) and a two-sided z-test (the same model and numbers as
statsmodels' `NormalIndPower` with `proportion_effectsize`); (2) per-user CTR as a ratio metric
sum(clicks) / sum(impressions) randomised by user, whose variance comes from the delta method, since
impressions of one user are correlated and treating them as independent understates the variance.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from icg_rec.errors import IcgRecError


@dataclass
class RatioMoments:
    """Per-unit moments of a ratio metric sum(numerator) / sum(denominator) over units."""

    ratio: float  # sum(numerators) / sum(denominators)
    unit_variance: float  # delta-method variance of the ratio times n_units (so Var(ratio) = this / n)
    n_units: int  # units the moments were computed from


def proportion_effect_size(p_treatment: float, p_control: float) -> float:
    """Cohen's h between two proportions."""
    _check_probability(p_treatment, "p_treatment")
    _check_probability(p_control, "p_control")
    return 2 * math.asin(math.sqrt(p_treatment)) - 2 * math.asin(math.sqrt(p_control))


def normal_power(effect_size: float, nobs1: float, alpha: float = 0.05, ratio: float = 1.0) -> float:
    """Power of a two-sided two-sample z-test.

    Args:
        effect_size: standardized difference (Cohen's d or h).
        nobs1: units in arm 1; arm 2 has `ratio * nobs1`.
        alpha: two-sided significance level.
        ratio: size of arm 2 relative to arm 1.

    Returns:
        The probability of rejecting the null under the alternative (both tails counted).
    """
    nobs = 1.0 / (1.0 / nobs1 + 1.0 / (nobs1 * ratio))  # effective sample size
    crit = stats.norm.isf(alpha / 2)
    shift = effect_size * math.sqrt(nobs)
    return float(stats.norm.sf(crit - shift) + stats.norm.cdf(-crit - shift))


def solve_nobs(effect_size: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0) -> float:
    """Units per arm 1 (unrounded) that reach `power` for `effect_size` with a two-sided z-test."""
    if effect_size == 0:
        raise IcgRecError("effect size is 0: no sample size can detect a zero effect")
    if not 0 < alpha < 1 or not alpha < power < 1:
        raise IcgRecError(f"need 0 < alpha < power < 1; got alpha={alpha}, power={power}")
    h = abs(effect_size)
    # Upper bracket from the one-tail closed form, doubled: the two-tail power is higher, so the root lies below.
    guess = ((stats.norm.isf(alpha / 2) + stats.norm.ppf(power)) / h) ** 2 * (1 + 1 / ratio)
    return float(
        optimize.brentq(lambda n: normal_power(h, n, alpha, ratio) - power, 1e-6, 2 * guess + 2, xtol=1e-10)
    )


def sample_size_two_proportions(
    p_control: float, relative_lift: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    """Impressions (or users, if each sees one) per control arm to detect a relative CTR lift.

    Args:
        p_control: baseline CTR.
        relative_lift: e.g. 0.05 for +5% relative.
        alpha: two-sided significance level.
        power: target power.
        ratio: treatment size relative to control.

    Returns:
        Units in the control arm, unrounded (round up when planning).
    """
    _check_probability(p_control, "p_control")
    p_treatment = p_control * (1 + relative_lift)
    return solve_nobs(proportion_effect_size(p_treatment, p_control), alpha, power, ratio)


def minimum_effect_size(nobs1: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0) -> float:
    """Smallest standardized effect a two-sided z-test detects with `nobs1` units in arm 1."""
    return float(
        optimize.brentq(lambda e: normal_power(e, nobs1, alpha, ratio) - power, 1e-12, 50.0, xtol=1e-14)
    )


def minimum_detectable_lift(
    p_control: float, nobs1: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    """Smallest relative CTR increase detectable with `nobs1` control units (arcsine scale inverted)."""
    _check_probability(p_control, "p_control")
    angle = math.asin(math.sqrt(p_control)) + minimum_effect_size(nobs1, alpha, power, ratio) / 2
    if angle >= math.pi / 2:
        raise IcgRecError(f"{nobs1} units cannot detect any lift from CTR {p_control} at power {power}")
    return math.sin(angle) ** 2 / p_control - 1


def ratio_moments(numerators: np.ndarray, denominators: np.ndarray) -> RatioMoments:
    """Delta-method moments of sum(numerators) / sum(denominators), one entry per randomisation unit.

    Args:
        numerators: per-user clicks, shape (n_users,).
        denominators: per-user impressions, shape (n_users,), all > 0.

    Returns:
        The ratio and its per-unit variance: Var(ratio) ~= unit_variance / n_users, from
        (var_y - 2 R cov_yx + R^2 var_x) / mean_x^2.
    """
    y = np.asarray(numerators, dtype=np.float64)
    x = np.asarray(denominators, dtype=np.float64)
    if y.shape != x.shape or y.ndim != 1:
        raise IcgRecError(f"numerators {y.shape} and denominators {x.shape} must be 1-d of equal length")
    if len(y) < 2:
        raise IcgRecError(f"need at least 2 units for a variance; got {len(y)}")
    if not np.isfinite(y).all() or not np.isfinite(x).all():
        raise IcgRecError("numerators and denominators must be finite (no NaN)")
    if (x <= 0).any():
        raise IcgRecError(
            f"{int((x <= 0).sum())} unit(s) have denominator <= 0; every unit needs impressions"
        )
    ratio = y.sum() / x.sum()
    cov = np.cov(y, x, ddof=1)
    unit_variance = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / x.mean() ** 2
    return RatioMoments(ratio=float(ratio), unit_variance=float(unit_variance), n_units=len(y))


def sample_size_ratio_metric(
    moments: RatioMoments, relative_lift: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    """Users per control arm to detect a relative lift of a per-user ratio metric (e.g. CTR)."""
    effect_size = moments.ratio * relative_lift / math.sqrt(moments.unit_variance)
    return solve_nobs(effect_size, alpha, power, ratio)


def duration_days(total_units: float, daily_new_units: float, traffic_share: float = 1.0) -> int:
    """Days until the experiment holds `total_units` units, given daily new eligible units and its traffic share."""
    if daily_new_units <= 0 or not 0 < traffic_share <= 1:
        raise IcgRecError(
            f"need daily_new_units > 0 and 0 < traffic_share <= 1; got {daily_new_units}, {traffic_share}"
        )
    return math.ceil(total_units / (daily_new_units * traffic_share))


def _check_probability(p: float, name: str) -> None:
    if not 0 < p < 1:
        raise IcgRecError(f"{name} must lie in (0, 1); got {p}")
