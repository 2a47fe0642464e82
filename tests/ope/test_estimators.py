import numpy as np
import pytest

from icg_rec.errors import IcgRecError, SchemaError
from icg_rec.ope.design import dr_lift_variance_prior, exploration_impressions
from icg_rec.ope.estimators import (
    BanditLog,
    bootstrap_ci,
    cluster_multiplicities,
    clustered_variance,
    diagnostics,
    estimate,
    round_terms,
)


def _log(n=6, groups=None):
    return BanditLog(
        reward=np.array([1.0, 0, 0, 1, 0, 1])[:n],
        action=np.array([0, 1, 1, 0, 1, 0])[:n],
        pscore=np.full(n, 0.5),
        groups=np.arange(n) if groups is None else groups,
    )


def test_terms_and_estimates_on_a_tiny_log():
    log = _log()
    target = np.tile([[1.0, 0.0]], (6, 1))  # always slot 0: w = 2 on slot-0 rows, 0 elsewhere
    q = np.tile([[0.5, 0.25]], (6, 1))
    assert estimate("ips", log, target) == pytest.approx(6 / 6)  # 3 clicks on slot 0, each 2 / 6
    assert estimate("snips", log, target) == pytest.approx(1.0)  # mean(w r) / mean(w) = 1 / 1
    assert estimate("dm", log, target, q) == pytest.approx(0.5)
    assert estimate("dr", log, target, q) == pytest.approx(0.5 + 3 * 2 * 0.5 / 6)
    assert estimate("dr_clipped", log, target, q, clip=1.0) == pytest.approx(0.5 + 3 * 1 * 0.5 / 6)
    assert estimate("switch_dr", log, target, q, clip=1.0) == pytest.approx(0.5)  # w = 2 > 1: dropped
    num, den = round_terms("snips", log, target)
    assert den.tolist() == [2, 0, 0, 2, 0, 2]


def test_bad_logs_and_inputs_are_refused():
    with pytest.raises(SchemaError, match=r"\(0, 1\]"):
        BanditLog(np.array([1.0]), np.array([0]), np.array([0.0]), np.array([0]))
    with pytest.raises(SchemaError, match=r"\(0, 1\]"):
        BanditLog(np.array([1.0]), np.array([0]), np.array([np.nan]), np.array([0]))
    with pytest.raises(SchemaError, match="clicks"):
        BanditLog(np.array([2.0]), np.array([0]), np.array([0.5]), np.array([0]))
    with pytest.raises(SchemaError, match="like reward"):
        BanditLog(np.array([1.0, 0.0]), np.array([0]), np.array([0.5, 0.5]), np.array([0, 1]))
    with pytest.raises(SchemaError, match="empty"):
        BanditLog(np.zeros(0), np.zeros(0, dtype=int), np.zeros(0), np.zeros(0, dtype=int))
    log, target = _log(), np.tile([[1.0, 0.0]], (6, 1))
    with pytest.raises(SchemaError, match="unknown estimator"):
        estimate("ipw", log, target)
    with pytest.raises(SchemaError, match="needs q_hat"):
        estimate("dr", log, target)
    with pytest.raises(SchemaError, match="action_dist must be"):
        estimate("ips", log, target[:3])
    with pytest.raises(SchemaError, match="slots"):
        estimate("ips", log, target[:, :1])


def test_cluster_bootstrap_resamples_users_and_keeps_snips_a_ratio():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 4)
    index, counts = cluster_multiplicities(groups, 200, seed=1)
    assert counts.shape == (200, 50) and (counts.sum(axis=1) == 50).all()
    num = rng.random((200, 2))
    den = np.column_stack([np.ones(200), rng.random(200) + 0.5])
    bounds = bootstrap_ci(num, den, index, counts)
    per_user = np.zeros((50, 2))
    per_den = np.zeros((50, 2))
    np.add.at(per_user, index, num)
    np.add.at(per_den, index, den)
    replicate = (counts[0] @ per_user) / (counts[0] @ per_den)  # replicate 0 by hand
    reps = (counts @ per_user) / (counts @ per_den)
    assert reps[0] == pytest.approx(replicate)
    np.testing.assert_allclose(bounds, np.quantile(reps, [0.025, 0.975], axis=0).T)
    point = num.sum(0) / den.sum(0)
    assert ((bounds[:, 0] < point) & (point < bounds[:, 1])).all()


def test_clustered_variance_counts_user_correlation():
    x = np.array([1.0, 1.0, 0.0, 0.0])
    assert clustered_variance(x, np.arange(4)) == pytest.approx(x.var())  # one row per user: plain variance
    assert clustered_variance(x, np.array([0, 0, 1, 1])) == pytest.approx(
        2 * x.var()
    )  # perfectly correlated pairs


def test_diagnostics():
    log = _log()
    d = diagnostics(log, np.tile([[1.0, 0.0]], (6, 1)))
    assert (d.n, d.max_weight, d.mean_weight, d.match_rate) == (6, 2.0, 1.0, 0.5)
    assert d.ess == pytest.approx(36 / 12) and d.ess_share == pytest.approx(0.5)


def test_exploration_sizing():
    # uniform over K = 10, deterministic target != original: factor 2K = 20
    k = 10
    target, original = np.zeros((4, k)), np.zeros((4, k))
    target[:, 3], original[:, 0] = 1.0, 1.0
    uniform = np.full((4, k), 1 / k)
    assert dr_lift_variance_prior(0.1, target, original, uniform) == pytest.approx(0.09 * 20)
    assert exploration_impressions(1.8, 0.1, 0.02) == pytest.approx(1.8 * (1.959963984540054 / 0.002) ** 2)
    narrow = np.zeros((4, k))
    narrow[:, [0, 3]] = 0.5
    assert dr_lift_variance_prior(0.1, target, original, narrow) == pytest.approx(0.09 * 4)
    with pytest.raises(IcgRecError, match="never shows"):
        dr_lift_variance_prior(0.1, target, original, original)
    with pytest.raises(IcgRecError, match="ctr"):
        dr_lift_variance_prior(1.0, target, original, uniform)
    with pytest.raises(IcgRecError, match="shape"):
        dr_lift_variance_prior(0.1, target[:2], original, uniform)
    with pytest.raises(IcgRecError, match="half_width"):
        exploration_impressions(1.0, 0.1, 0.0)
    with pytest.raises(IcgRecError, match="alpha"):
        exploration_impressions(1.0, 0.1, 0.02, alpha=1.0)
