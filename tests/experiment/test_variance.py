import numpy as np
import pytest

from icg_rec.errors import IcgRecError
from icg_rec.experiment.variance import cuped_adjust, cuped_theta, srm_check, variance_reduction


def test_cuped_keeps_the_mean_and_removes_rho_squared_of_the_variance():
    rng = np.random.default_rng(0)
    pre = rng.gamma(2.0, 1.0, size=5000)
    post = 0.8 * pre + rng.normal(0, 0.5, size=5000)
    adjusted = cuped_adjust(post, pre)
    rho2 = variance_reduction(post, pre)
    assert adjusted.mean() == pytest.approx(post.mean(), abs=1e-12)
    assert adjusted.var(ddof=1) == pytest.approx(post.var(ddof=1) * (1 - rho2), rel=1e-10)
    assert rho2 > 0.5


def test_cuped_refuses_a_constant_covariate():
    with pytest.raises(IcgRecError, match="constant"):
        cuped_theta(np.arange(5.0), np.ones(5))


def test_srm_check_flags_a_broken_split():
    fine = srm_check({"control": 5000, "treatment": 5050}, {"control": 0.5, "treatment": 0.5})
    broken = srm_check({"control": 5000, "treatment": 5400}, {"control": 0.5, "treatment": 0.5})
    assert not fine.mismatch
    assert broken.mismatch
    assert broken.chi2 == pytest.approx(2 * 200**2 / 5200)


def test_srm_check_refuses_mismatched_arms():
    with pytest.raises(IcgRecError, match="differ from planned"):
        srm_check({"control": 10, "b": 10}, {"control": 0.5, "treatment": 0.5})
