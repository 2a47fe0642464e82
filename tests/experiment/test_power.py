import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from icg_rec.errors import IcgRecError
from icg_rec.experiment.power import (
    duration_days,
    minimum_detectable_lift,
    normal_power,
    proportion_effect_size,
    ratio_moments,
    sample_size_ratio_metric,
    sample_size_two_proportions,
)


@pytest.mark.parametrize(
    ("p_control", "lift", "alpha", "power", "ratio"),
    [
        (0.1, 0.05, 0.05, 0.8, 1.0),
        (0.02, 0.10, 0.01, 0.9, 1.0),
        (0.3, 0.02, 0.05, 0.8, 2.0),
        (0.5, 0.5, 0.1, 0.95, 0.5),
    ],
)
def test_sample_size_equals_statsmodels(p_control, lift, alpha, power, ratio):
    h = proportion_effectsize(p_control * (1 + lift), p_control)
    expected = NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=power, ratio=ratio)
    got = sample_size_two_proportions(p_control, lift, alpha=alpha, power=power, ratio=ratio)
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("h", "n", "alpha", "ratio"), [(0.01, 50_000, 0.05, 1.0), (0.2, 100, 0.01, 3.0), (-0.1, 400, 0.05, 1.0)]
)
def test_power_equals_statsmodels(h, n, alpha, ratio):
    expected = NormalIndPower().power(effect_size=h, nobs1=n, alpha=alpha, ratio=ratio)
    assert normal_power(h, n, alpha, ratio) == pytest.approx(expected, rel=1e-12)


def test_cohens_h_equals_statsmodels():
    assert proportion_effect_size(0.12, 0.1) == pytest.approx(proportion_effectsize(0.12, 0.1), rel=1e-15)


def test_minimum_detectable_lift_inverts_sample_size():
    n = sample_size_two_proportions(0.08, 0.07)
    assert minimum_detectable_lift(0.08, n) == pytest.approx(0.07, rel=1e-6)


def test_ratio_moments_equal_the_linearised_variance():
    rng = np.random.default_rng(0)
    impressions = rng.integers(1, 30, size=500).astype(float)
    clicks = rng.binomial(impressions.astype(int), 0.1).astype(float)
    moments = ratio_moments(clicks, impressions)
    ratio = clicks.sum() / impressions.sum()
    linearised = (clicks - ratio * impressions) / impressions.mean()  # influence function of the ratio
    assert moments.ratio == ratio
    assert moments.unit_variance == pytest.approx(linearised.var(ddof=1), rel=1e-10)


def test_ratio_metric_sample_size_equals_statsmodels_with_the_delta_method_effect():
    rng = np.random.default_rng(1)
    impressions = rng.integers(1, 30, size=1000).astype(float)
    clicks = rng.binomial(impressions.astype(int), 0.1).astype(float)
    moments = ratio_moments(clicks, impressions)
    d = moments.ratio * 0.05 / math.sqrt(moments.unit_variance)
    expected = NormalIndPower().solve_power(effect_size=d, alpha=0.05, power=0.8)
    assert sample_size_ratio_metric(moments, 0.05) == pytest.approx(expected, rel=1e-6)


def test_duration_rounds_up():
    assert duration_days(2000, daily_new_units=300, traffic_share=0.5) == 14


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sample_size_two_proportions(0.0, 0.1), "p_control must lie in"),
        (lambda: sample_size_two_proportions(0.1, 0.0), "effect size is 0"),
        (lambda: sample_size_two_proportions(0.1, 0.1, alpha=0.9, power=0.8), "alpha < power"),
        (lambda: ratio_moments(np.ones(3), np.array([1.0, 0.0, 2.0])), "1 unit"),
        (lambda: ratio_moments(np.ones(3), np.ones(2)), "equal length"),
        (lambda: ratio_moments(np.array([1.0, np.nan]), np.ones(2)), "finite"),
        (lambda: duration_days(10, 0), "daily_new_units > 0"),
    ],
)
def test_bad_inputs_are_refused(call, message):
    with pytest.raises(IcgRecError, match=message):
        call()
