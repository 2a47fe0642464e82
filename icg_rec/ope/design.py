"""Sizing an exploration bucket: impressions the DR estimate of a cover policy's lift needs.

The DR estimate of CTR(target) - CTR(baseline) from a log of an exploration policy b is the mean of the
per-row terms  q(x, pi_t) - q(x, pi_o) + (w_t - w_o)(r - q(x, a)),  w = pi(a | x) / b(a | x). Its variance
per impression, with q close to the true CTR p, is dominated by the weighted residuals:
  sigma^2 ~= p (1 - p) E_x[ sum_a (pi_t(a | x) - pi_o(a | x))^2 / b(a | x) ]
(the a-priori formula: every impression's residual has Bernoulli variance, users are independent).
With a pilot exploration log, the estimator's own clustered variance replaces it (eval.ope checks both
against the spread of the DR lift across simulated logs). A 95% CI of half-width h * CTR(baseline) needs
n = sigma^2 (z / (h CTR(baseline)))^2 impressions.
"""

import numpy as np
from scipy import stats

from icg_rec.errors import IcgRecError
from icg_rec.ope.policies import CoverCandidates, parse_policy, policy_context


def weight_factor(target: np.ndarray, baseline: np.ndarray, exploration: np.ndarray) -> float:
    """E over impressions of sum_a (pi_target(a) - pi_baseline(a))^2 / pi_explore(a).

    Args:
        target: (n, K) target policy probabilities on representative impressions.
        baseline: (n, K) baseline policy probabilities (e.g. the original cover).
        exploration: (n, K) exploration (logging) policy probabilities.

    Returns:
        The factor (2K for two different deterministic covers under uniform exploration over K).
    """
    if not target.shape == baseline.shape == exploration.shape:
        raise IcgRecError(
            f"target, baseline and exploration must share a shape; got {target.shape}, {baseline.shape}, {exploration.shape}"
        )
    diff = target - baseline  # (n, K)
    if ((diff != 0) & (exploration <= 0)).any():
        raise IcgRecError(
            "the exploration policy never shows some cover the target or baseline shows: "
            "the DR lift has no support there; explore every cover the test compares"
        )
    safe = np.where(exploration > 0, exploration, 1.0)
    return float((diff**2 / safe).sum(axis=1).mean())


def dr_lift_variance_prior(
    ctr: float, target: np.ndarray, baseline: np.ndarray, exploration: np.ndarray
) -> float:
    """A-priori per-impression variance of the DR lift of `target` over `baseline` under `exploration`.

    Args:
        ctr: the baseline click rate (e.g. the pre-period CTR).
        target, baseline, exploration: (n, K) policy probabilities, as in `weight_factor`.

    Returns:
        sigma^2 = ctr (1 - ctr) weight_factor, such that Var(DR lift over n impressions) ~= sigma^2 / n.
    """
    if not 0 < ctr < 1:
        raise IcgRecError(f"ctr must lie in (0, 1), got {ctr}")
    return ctr * (1 - ctr) * weight_factor(target, baseline, exploration)


def exploration_impressions(
    variance: float, baseline_ctr: float, half_width: float, alpha: float = 0.05
) -> float:
    """Impressions for a (1 - alpha) CI of the lift with half-width `half_width` x `baseline_ctr`.

    Args:
        variance: per-impression variance of the lift estimate (Var over n impressions = variance / n).
        baseline_ctr: CTR the half-width is relative to.
        half_width: relative half-width, e.g. 0.02.
        alpha: 1 - the CI level.

    Returns:
        The impressions needed (unrounded).
    """
    if not half_width > 0 or not baseline_ctr > 0:
        raise IcgRecError(f"half_width and baseline_ctr must be > 0; got {half_width}, {baseline_ctr}")
    if not 0 < alpha < 1:
        raise IcgRecError(f"alpha must lie in (0, 1), got {alpha}")
    z = stats.norm.isf(alpha / 2)
    return float(variance * (z / (half_width * baseline_ctr)) ** 2)


def exploration_weight_factor(
    candidates: CoverCandidates,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    exploration: str,
    target: str,
    user_cohort: np.ndarray | None = None,
) -> float:
    """E over impressions of sum_a (pi_target(a) - pi_original(a))^2 / pi_explore(a) (see the module docstring).

    Args:
        candidates: every item's candidate covers.
        user_ids, item_ids: (n,) representative impressions (e.g. the pre-period log).
        exploration: spec of the exploration policy.
        target: spec of the target policy (reward-based policies need scores: size them with a pilot log).
        user_cohort: (n,) cohort of each impression's user (own_cohort); None = everyone in cohort 0,
            which gives the same factor whenever every item has a cover for every cohort.

    Returns:
        The factor.
    """
    cohort = np.zeros(len(user_ids), dtype=np.int64) if user_cohort is None else user_cohort
    context = policy_context(candidates, user_ids, item_ids, user_cohort=cohort)
    probs = {spec: parse_policy(spec).probabilities(context) for spec in (exploration, target, "original")}
    return weight_factor(probs[target], probs["original"], probs[exploration])
