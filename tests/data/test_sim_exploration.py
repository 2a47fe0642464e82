import numpy as np
import pytest
import torch

from icg_rec.data.schema import validate_interactions
from icg_rec.data.sim import SimConfig, SimWorld, render_covers
from icg_rec.data.sim.exploration import CoverExposure
from icg_rec.data.sim.world import _uniform_styles
from icg_rec.errors import SchemaError

TINY = SimConfig(n_users=60, n_items=12, n_cohorts=2, image_size=8, impressions_per_user=5, seed=1)
K = 3


@pytest.fixture(scope="module")
def exposure_setup():
    world = SimWorld.generate(TINY)
    extra = render_covers(_uniform_styles(TINY.n_items * (K - 1), torch.Generator().manual_seed(0)), 8)
    covers = torch.cat([world.covers[:, None], extra.reshape(TINY.n_items, K - 1, 3, 8, 8)], dim=1)
    cover_ids = np.tile(np.arange(K), (TINY.n_items, 1))
    cover_ids[0, 2] = -1  # item 0 has two candidates
    return world, covers, CoverExposure.build(world, covers, cover_ids)


def test_click_probs_are_the_oracles(exposure_setup):
    world, covers, exposure = exposure_setup
    imp = exposure.impressions
    users, items = torch.tensor(imp["user_id"].to_numpy()), torch.tensor(imp["item_id"].to_numpy())
    with torch.no_grad():
        p1 = world.oracle.click_prob(users, covers[items, 1], items).double().numpy()
    np.testing.assert_allclose(exposure.click_probs[:, 1], p1, rtol=1e-5)
    np.testing.assert_allclose(exposure.click_probs[:, 0], world.impression_prob.double().numpy(), rtol=1e-5)
    assert (exposure.click_probs[imp["item_id"].to_numpy() == 0, 2] == 0).all()


def _uniform(exposure):
    valid = (exposure.cover_ids >= 0).astype(float)
    return valid / valid.sum(axis=1, keepdims=True)


def test_a_log_under_a_policy_is_a_valid_cover_aware_log(exposure_setup):
    world, _, exposure = exposure_setup
    log = exposure.simulate(_uniform(exposure), seed=3)
    validate_interactions(log)
    assert log.height == world.dataset.interactions.height
    item0 = log.filter(log["item_id"] == 0)
    assert set(item0["cover_id"].to_list()) <= {0, 1} and (item0["propensity"] == 0.5).all()
    assert np.allclose(log.filter(log["item_id"] != 0)["propensity"].to_numpy(), 1 / 3)
    assert log.equals(exposure.simulate(_uniform(exposure), seed=3))


def test_true_ctr_is_the_expected_click_rate_of_the_policy(exposure_setup):
    _, _, exposure = exposure_setup
    original = np.zeros(exposure.click_probs.shape)
    original[:, 0] = 1.0
    assert exposure.true_ctr(original) == pytest.approx(exposure.click_probs[:, 0].mean())
    rng = np.random.default_rng(0)
    clicks = [exposure.draw(_uniform(exposure), rng)[1].mean() for _ in range(300)]
    assert np.mean(clicks) == pytest.approx(exposure.true_ctr(_uniform(exposure)), rel=0.02)


def test_bad_inputs_are_refused(exposure_setup):
    world, covers, exposure = exposure_setup
    with pytest.raises(SchemaError, match="n_items"):
        CoverExposure.build(world, covers[:3], np.zeros((3, K)))
    ids = np.tile(np.arange(K), (TINY.n_items, 1))
    ids[4] = -1
    with pytest.raises(SchemaError, match="at least one"):
        CoverExposure.build(world, covers, ids)
    with pytest.raises(SchemaError, match="missing"):
        CoverExposure.build(
            world,
            covers,
            np.tile(np.arange(K), (TINY.n_items, 1)),
            world.dataset.interactions.drop("timestamp"),
        )
    probs = _uniform(exposure)
    with pytest.raises(SchemaError, match="shape|\\(n, K\\)"):
        exposure.true_ctr(probs[:, :2])
    with pytest.raises(SchemaError, match="sum to 1"):
        exposure.true_ctr(probs * 2)
    bad = np.full(probs.shape, 1 / 3)  # mass on item 0's empty slot
    with pytest.raises(SchemaError, match="empty"):
        exposure.simulate(bad)
