"""Off-policy estimators of a target cover policy's CTR from a log of another (logging) policy.

The formulas are Open Bandit Pipeline's (`obp.ope.estimators`, obp 0.5.7), for one position:
with importance weight w_i = pi_e(a_i | x_i) / pscore_i, outcome model q(x, a) and
q(x_i, pi_e) = sum_a pi_e(a | x_i) q(x_i, a),
- ips:        mean(w r)                                          (InverseProbabilityWeighting)
- snips:      mean(w r) / mean(w)                                (SelfNormalizedInverseProbabilityWeighting)
- dm:         mean(q(x, pi_e))                                   (DirectMethod)
- dr:         mean(q(x, pi_e) + w (r - q(x_i, a_i)))             (DoublyRobust)
- dr_clipped: dr with w replaced by min(w, clip)                 (DoublyRobust(lambda_=clip))
- switch_dr:  dr with w replaced by w 1[w <= clip]               (SwitchDoublyRobust(lambda_=clip))
Each estimator is the mean of per-row terms (snips: of w r / mean(w)), as obp's `_estimate_round_rewards`.

Confidence intervals resample users, not rows (a user's impressions are correlated): a replicate draws
users with replacement and recomputes the estimate as a ratio of per-user sums, so snips stays
self-normalized within each replicate. `obp`'s own intervals resample rows.
"""

from dataclasses import dataclass

import numpy as np

from icg_rec.errors import SchemaError

ESTIMATORS = ("ips", "snips", "dm", "dr", "dr_clipped", "switch_dr")
NEEDS_OUTCOME = ("dm", "dr", "dr_clipped", "switch_dr")


@dataclass(frozen=True)
class BanditLog:
    """A cover-aware log as arrays: what every estimator reads."""

    reward: np.ndarray  # (n,) float64 click 0/1
    action: np.ndarray  # (n,) int64 slot of the shown cover
    pscore: np.ndarray  # (n,) float64 logging propensity of the shown cover, in (0, 1]
    groups: np.ndarray  # (n,) int64 user of each row (the bootstrap's cluster)

    def __post_init__(self) -> None:
        n = len(self.reward)
        for name in ("action", "pscore", "groups"):
            if np.shape(getattr(self, name)) != (n,):
                raise SchemaError(
                    f"{name} must be (n,) = ({n},) like reward, got {np.shape(getattr(self, name))}"
                )
        if n == 0:
            raise SchemaError("the log is empty: nothing to estimate from")
        if not np.isin(self.reward, (0.0, 1.0)).all():
            raise SchemaError("reward must hold clicks 0.0 / 1.0")
        if not ((self.pscore > 0) & (self.pscore <= 1)).all():  # also refuses NaN
            bad = self.pscore[~((self.pscore > 0) & (self.pscore <= 1))]
            raise SchemaError(f"propensity must lie in (0, 1]; got e.g. {bad[:5].tolist()}")


@dataclass(frozen=True)
class Diagnostics:
    """What practitioners read before trusting an importance-weighted estimate."""

    n: int  # log rows
    ess: float  # effective sample size (sum w)^2 / sum w^2
    ess_share: float  # ess / n
    max_weight: float  # largest importance weight
    mean_weight: float  # mean importance weight: ~1 when the propensities are right
    match_rate: float  # share of rows whose shown cover the target policy could show (w > 0)


def round_terms(
    estimator: str,
    log: BanditLog,
    action_dist: np.ndarray,
    q_hat: np.ndarray | None = None,
    clip: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row numerator and denominator terms: the estimate is sum(numerator) / sum(denominator).

    Args:
        estimator: one of ESTIMATORS.
        log: the logged rows.
        action_dist: (n, K) target policy probabilities of each slot.
        q_hat: (n, K) outcome model p(click) of each slot (dm and the dr family).
        clip: weight threshold of dr_clipped (min(w, clip)) and switch_dr (w 1[w <= clip]).

    Returns:
        (numerator, denominator), each (n,); the denominator is 1 per row except for snips (w).
    """
    n = len(log.reward)
    if estimator not in ESTIMATORS:
        raise SchemaError(f"unknown estimator {estimator!r}; known: {ESTIMATORS}")
    if action_dist.ndim != 2 or action_dist.shape[0] != n:
        raise SchemaError(f"action_dist must be (n, K) with n = {n}, got {action_dist.shape}")
    if ((log.action < 0) | (log.action >= action_dist.shape[1])).any():
        raise SchemaError(f"actions must be slots in [0, {action_dist.shape[1]})")
    rows = np.arange(n)
    w = action_dist[rows, log.action] / log.pscore  # (n,)
    ones = np.ones(n)
    if estimator == "ips":
        return log.reward * w, ones
    if estimator == "snips":
        return log.reward * w, w
    if q_hat is None or q_hat.shape != action_dist.shape:
        raise SchemaError(
            f"{estimator} needs q_hat of shape {action_dist.shape}, got {None if q_hat is None else q_hat.shape}"
        )
    direct = (action_dist * q_hat).sum(axis=1)  # (n,) q(x, pi_e)
    if estimator == "dm":
        return direct, ones
    if estimator == "dr_clipped":
        w = np.minimum(w, clip)
    elif estimator == "switch_dr":
        w = w * (w <= clip)
    return direct + w * (log.reward - q_hat[rows, log.action]), ones


def estimate(
    estimator: str,
    log: BanditLog,
    action_dist: np.ndarray,
    q_hat: np.ndarray | None = None,
    clip: float = np.inf,
) -> float:
    """The estimator's value of the target policy (see the module docstring for the formulas).

    Args:
        estimator, log, action_dist, q_hat, clip: as in `round_terms`.

    Returns:
        The estimated CTR of the target policy.
    """
    numerator, denominator = round_terms(estimator, log, action_dist, q_hat, clip)
    return float(numerator.sum() / denominator.sum())


def cluster_multiplicities(groups: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """User-level bootstrap draws: (group index of each row (n,), multiplicities (n_boot, n_groups)).

    Replicate b draws n_groups users with replacement; a user drawn m times counts m times.
    """
    _, index = np.unique(groups, return_inverse=True)
    n_groups = int(index.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))  # (B, G)
    flat = (np.arange(n_boot)[:, None] * n_groups + draws).ravel()
    counts = np.bincount(flat, minlength=n_boot * n_groups).reshape(n_boot, n_groups).astype(np.float64)
    return index, counts


def bootstrap_ci(
    numerators: np.ndarray,
    denominators: np.ndarray,
    group_index: np.ndarray,
    multiplicities: np.ndarray,
    alpha: float = 0.05,
) -> np.ndarray:
    """Percentile intervals of ratio estimates sum(num) / sum(den) under user-level resampling.

    Args:
        numerators: (n, m) per-row numerator terms of m estimates (e.g. policies x estimators).
        denominators: (n, m) their denominator terms.
        group_index: (n,) group of each row, 0..G-1 (from `cluster_multiplicities`).
        multiplicities: (B, G) replicate weights of each group.
        alpha: 1 - the interval's level.

    Returns:
        (m, 2) lower and upper bounds.
    """
    n_groups = multiplicities.shape[1]
    num = _group_sums(numerators, group_index, n_groups)  # (G, m) per-user sums
    den = _group_sums(denominators, group_index, n_groups)
    replicates = (multiplicities @ num) / (multiplicities @ den)  # (B, m)
    return np.quantile(replicates, [alpha / 2, 1 - alpha / 2], axis=0).T


def _group_sums(values: np.ndarray, group_index: np.ndarray, n_groups: int) -> np.ndarray:
    """(G, m) sums of the rows (n, m) of each group."""
    return np.stack(
        [np.bincount(group_index, values[:, j], n_groups) for j in range(values.shape[1])], axis=1
    )


def clustered_variance(numerator: np.ndarray, group_index: np.ndarray) -> float:
    """Per-row variance of a mean estimate with user clusters: n Var(mean), so Var(mean over n rows) = this / n.

    It is sum over users of (S_u - n_u mean)^2 / n, with S_u the user's sum and n_u their rows; it equals
    the plain variance when every user has one row.
    """
    n = len(numerator)
    mean = numerator.mean()
    n_groups = int(group_index.max()) + 1
    sums = np.bincount(group_index, numerator, n_groups)
    rows = np.bincount(group_index, minlength=n_groups)
    return float(((sums - rows * mean) ** 2).sum() / n)


def diagnostics(log: BanditLog, action_dist: np.ndarray) -> Diagnostics:
    """Weight diagnostics of a target policy on a log.

    Args:
        log: the logged rows.
        action_dist: (n, K) target policy probabilities.

    Returns:
        Effective sample size, max / mean weight and the share of rows the target could have produced.
    """
    w = action_dist[np.arange(len(log.action)), log.action] / log.pscore
    ess = float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0
    return Diagnostics(
        n=len(w),
        ess=ess,
        ess_share=ess / len(w),
        max_weight=float(w.max()),
        mean_weight=float(w.mean()),
        match_rate=float((w > 0).mean()),
    )
