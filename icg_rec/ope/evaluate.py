"""Off-policy evaluation of cover policies on one cover-aware log: estimates, intervals, diagnostics, report.

`evaluate_policies` reads a log with `cover_id` and `propensity` columns (a log without propensities is
refused: importance weights need them), lays every row out over its item's candidate covers, fits the
outcome model out-of-fold when an estimator needs it, and returns each target policy's estimates with
user-level bootstrap intervals, its weight diagnostics and its DR lift over the original cover.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from icg_rec.errors import SchemaError
from icg_rec.io import atomic_write, write_json
from icg_rec.ope.estimators import (
    ESTIMATORS,
    NEEDS_OUTCOME,
    BanditLog,
    Diagnostics,
    bootstrap_ci,
    cluster_multiplicities,
    diagnostics,
    round_terms,
)
from icg_rec.ope.outcome import OutcomeConfig, fit_outcome_oof
from icg_rec.ope.policies import CoverCandidates, CoverPolicy, KindPolicy, OwnCohortPolicy, policy_context
from icg_rec.rewards.personalized import CoverInputs, PersonalizedRewardModel


@dataclass
class OPEConfig:
    estimators: list[str] = field(default_factory=lambda: list(ESTIMATORS))  # among ESTIMATORS
    clip: float = 10.0  # weight threshold of dr_clipped (min(w, clip)) and switch_dr (w <= clip kept)
    n_boot: int = 1000  # user-level bootstrap replicates of every interval
    alpha: float = 0.05  # 1 - interval level
    seed: int = 0  # seeds the bootstrap (the outcome model has its own seed)
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)  # the DM / DR outcome model


@dataclass
class PolicyEstimate:
    """One target policy on one log."""

    estimates: dict[str, float]  # estimator -> estimated CTR
    ci95: dict[str, tuple[float, float]]  # estimator -> user-level bootstrap interval
    diagnostics: Diagnostics
    dr_lift: float | None  # DR estimate of CTR(policy) - CTR(original cover); None without original covers
    dr_lift_ci95: tuple[float, float] | None  # its bootstrap interval (paired: the same resampled users)
    fallback_rows: int = 0  # own_cohort: rows whose item has no cover for the user's cohort (generic shown)


@dataclass
class OPEReport:
    n_rows: int  # log rows
    n_users: int  # distinct users (bootstrap clusters)
    logged_ctr: float  # the log's own click rate
    policies: dict[str, PolicyEstimate]  # spec -> estimates


def require_propensities(log: pl.DataFrame) -> None:
    """Refuses a log that off-policy evaluation cannot use, saying what is missing."""
    if missing := [c for c in ("cover_id", "propensity") if c not in log.columns]:
        hint = (
            "a log of shown covers without the logging policy's probabilities can measure lift on shown covers, "
            "not what another cover policy would earn"
            if "cover_id" in log.columns
            else "it does not say which cover each impression showed"
        )
        raise SchemaError(
            f"off-policy evaluation needs the interactions columns cover_id and propensity; this log lacks "
            f"{missing}: {hint}. Log cover_id (the shown cover) and propensity (the probability the logging "
            "policy had of showing it), e.g. from an exploration bucket (icg-rec ab plan --exploration-share)"
        )
    for name in ("user_id", "item_id", "label", "timestamp"):
        if name not in log.columns:
            raise SchemaError(f"the log is missing column {name!r}")


def estimate_all(
    log: BanditLog,
    distributions: dict[str, np.ndarray],
    q_hat: np.ndarray | None,
    config: OPEConfig,
    baseline: str | None = None,
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Every estimator of every policy, with user-level bootstrap intervals from one shared set of draws.

    Args:
        log: the logged rows.
        distributions: policy name -> (n, K) probabilities.
        q_hat: (n, K) cross-fitted outcome model, or None (then only ips and snips).
        config: estimators, clip, bootstrap.
        baseline: a policy name: adds `dr_lift` (DR of each policy minus DR of the baseline, paired) per policy.

    Returns:
        policy -> estimator (and `dr_lift`) -> (estimate, lower, upper).
    """
    names = [e for e in config.estimators if q_hat is not None or e not in NEEDS_OUTCOME]
    columns, keys = [], []
    for policy, dist in distributions.items():
        for est in names:
            columns.append(round_terms(est, log, dist, q_hat, config.clip))
            keys.append((policy, est))
    if baseline is not None and q_hat is not None:
        base, _ = round_terms("dr", log, distributions[baseline], q_hat)
        for policy, dist in distributions.items():
            terms, ones = round_terms("dr", log, dist, q_hat)
            columns.append((terms - base, ones))
            keys.append((policy, "dr_lift"))
    num = np.stack([c[0] for c in columns], axis=1)  # (n, m)
    den = np.stack([c[1] for c in columns], axis=1)
    index, counts = cluster_multiplicities(log.groups, config.n_boot, config.seed)
    bounds = bootstrap_ci(num, den, index, counts, config.alpha)  # (m, 2)
    values = num.sum(axis=0) / den.sum(axis=0)
    out: dict[str, dict[str, tuple[float, float, float]]] = {p: {} for p in distributions}
    for (policy, est), v, (lo, hi) in zip(keys, values, bounds, strict=True):
        out[policy][est] = (float(v), float(lo), float(hi))
    return out


def reward_scores(
    model: PersonalizedRewardModel, candidates: CoverCandidates, user_ids: np.ndarray, item_ids: np.ndarray
) -> np.ndarray:
    """The reward model's p(click) of every candidate cover for each (user, item) row: (n, K), 0 in empty slots.

    Users the model never saw are scored as its generic user. The model must read pixels (cnn tower) at
    the candidates' size.
    """
    if candidates.images is None:
        raise SchemaError("reward scores read the candidates' pixels: build CoverCandidates with images")
    users = np.asarray(user_ids, dtype=np.int64)
    frame = pl.DataFrame(
        {"user_id": np.where(np.isin(users, model.user_ids_), users, -1), "item_id": item_ids}
    )
    rows = candidates.item_rows(item_ids)
    scores = np.zeros((len(users), candidates.n_slots))
    for slot in range(candidates.n_slots):
        covers = CoverInputs(candidates.item_ids, candidates.images[:, slot].numpy())
        scores[:, slot] = model.predict(frame, covers)
    return np.where(candidates.kinds[rows] > 0, scores, 0.0)


def evaluate_policies(
    log: pl.DataFrame,
    candidates: CoverCandidates,
    policies: list[CoverPolicy],
    config: OPEConfig | None = None,
    user_cohorts: pl.DataFrame | None = None,
    reward: PersonalizedRewardModel | None = None,
) -> OPEReport:
    """Estimates each target policy's CTR from a cover-aware log of another policy.

    Args:
        log: user_id, item_id, label, timestamp, cover_id, propensity.
        candidates: every item's candidate covers (with images when the DM / DR family or a reward policy
            is asked for).
        policies: the target policies.
        config: estimators, clip, bootstrap, outcome model.
        user_cohorts: user_id, cohort_id (for own_cohort).
        reward: a fitted personalized reward model reading pixels (for reward_greedy / softmax).

    Returns:
        The report.
    """
    config = config or OPEConfig()
    require_propensities(log)
    if unknown := sorted(set(config.estimators) - set(ESTIMATORS)):
        raise SchemaError(f"unknown estimator(s) {unknown}; known: {ESTIMATORS}")
    if log.height == 0:
        raise SchemaError("the log is empty: nothing to estimate from")
    users, items = log["user_id"].to_numpy(), log["item_id"].to_numpy()
    slots = candidates.slots_of(items, log["cover_id"].to_numpy())
    bandit = BanditLog(log["label"].to_numpy().astype(np.float64), slots, log["propensity"].to_numpy(), users)
    cohort = None
    if user_cohorts is not None:
        joined = log.select("user_id").join(
            user_cohorts.select(pl.col("user_id").cast(pl.Int64), pl.col("cohort_id").cast(pl.Int64)),
            on="user_id",
            how="left",
            maintain_order="left",
        )
        if (n_missing := joined["cohort_id"].null_count()) > 0:
            raise SchemaError(f"{n_missing} log row(s) have users without a cohort in user_cohorts")
        cohort = joined["cohort_id"].to_numpy()
    scores = reward_scores(reward, candidates, users, items) if reward is not None else None
    context = policy_context(candidates, users, items, cohort, scores)
    dists = {policy.spec: policy.probabilities(context) for policy in policies}
    fallbacks = {
        policy.spec: OwnCohortPolicy.fallbacks(context)
        for policy in policies
        if isinstance(policy, OwnCohortPolicy) or isinstance(getattr(policy, "base", None), OwnCohortPolicy)
    }
    q_hat = None
    if any(e in NEEDS_OUTCOME for e in config.estimators):
        q_hat = fit_outcome_oof(log, slots, candidates, config.outcome)
    has_original = bool((candidates.kinds == 1).any(axis=1).all())
    if has_original and "original" not in dists:
        dists_all = {**dists, "original": KindPolicy("original").probabilities(context)}
    else:
        dists_all = dists
    results = estimate_all(
        bandit, dists_all, q_hat, config, "original" if has_original and q_hat is not None else None
    )
    out = {}
    for spec, dist in dists.items():
        r = results[spec]
        lift = r.get("dr_lift")
        out[spec] = PolicyEstimate(
            estimates={e: v[0] for e, v in r.items() if e != "dr_lift"},
            ci95={e: (v[1], v[2]) for e, v in r.items() if e != "dr_lift"},
            diagnostics=diagnostics(bandit, dist),
            dr_lift=None if lift is None else lift[0],
            dr_lift_ci95=None if lift is None else (lift[1], lift[2]),
            fallback_rows=fallbacks.get(spec, 0),
        )
    return OPEReport(log.height, int(np.unique(users).size), float(bandit.reward.mean()), out)


def write_ope_report(report: OPEReport, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Writes ope.json and report.md into `out_dir`; returns the report path."""
    out = Path(out_dir)
    write_json(out / "ope.json", {"meta": meta or {}, **asdict(report)})
    lines = [
        "# Off-policy evaluation of cover policies",
        "",
        f"{report.n_rows:,} logged impressions of {report.n_users:,} users, logged CTR {report.logged_ctr:.4f}.",
        "Intervals: 95% user-level bootstrap. Weights w = pi_target(shown cover) / propensity.",
        "",
    ]
    estimators = sorted({e for p in report.policies.values() for e in p.estimates}, key=ESTIMATORS.index)
    lines += [
        "| policy | " + " | ".join(estimators) + " | DR lift vs original | ESS share | max w | mean w |"
    ]
    lines += ["|---" * (len(estimators) + 5) + "|"]
    for spec, p in report.policies.items():
        cells = [f"{p.estimates[e]:.4f} [{p.ci95[e][0]:.4f}, {p.ci95[e][1]:.4f}]" for e in estimators]
        lift = (
            "-"
            if p.dr_lift is None
            else f"{p.dr_lift:+.4f} [{p.dr_lift_ci95[0]:+.4f}, {p.dr_lift_ci95[1]:+.4f}]"
        )
        d = p.diagnostics
        lines.append(
            f"| `{spec}` | "
            + " | ".join(cells)
            + f" | {lift} | {d.ess_share:.3f} | {d.max_weight:.1f} | {d.mean_weight:.3f} |"
        )
    for spec, p in report.policies.items():
        if p.fallback_rows:
            lines.append(
                f"\n`{spec}`: {p.fallback_rows:,} row(s) had no cover for the user's cohort and showed the generic cover."
            )
    lines += [
        "",
        "A mean weight far from 1 means the propensities do not match the log; a small ESS share means few",
        "rows carry the estimate (prefer DR, clip, or explore more).",
    ]
    path = out / "report.md"
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    return path
