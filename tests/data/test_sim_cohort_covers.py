import numpy as np
import pytest
import torch

from icg_rec.data.sim import SimConfig
from icg_rec.data.sim.cohort_covers import CohortCoverConfig, cohort_cover_world

SIM = SimConfig(n_users=60, n_items=30, n_cohorts=4, impressions_per_user=10, image_size=16, seed=0)


def test_each_row_shows_its_cohorts_cover_or_the_reference_cover():
    world = cohort_cover_world(SIM, CohortCoverConfig(share=0.5, n_candidates=64))
    log = world.interactions
    cover, item, cohort = (log[c].to_numpy() for c in ("cover_id", "item_id", "cohort_id"))
    np.testing.assert_array_equal(cohort, world.world.user_cohort.numpy()[log["user_id"].to_numpy()])
    np.testing.assert_array_equal(world.item_ids[cover], item)
    refreshed = cover >= SIM.n_items
    np.testing.assert_array_equal(world.cohort_ids[cover][refreshed], cohort[refreshed])
    assert (world.cohort_ids[cover][~refreshed] == -1).all()
    assert 0.3 < refreshed.mean() < 0.7
    n_refreshed = len(world.item_ids) - SIM.n_items
    assert world.covers.shape == (SIM.n_items + n_refreshed, 3, 16, 16)
    torch.testing.assert_close(world.covers[: SIM.n_items], world.world.covers)  # reference covers first
    assert len({(i, c) for i, c in zip(world.item_ids, world.cohort_ids, strict=True)}) == len(world.item_ids)


def test_share_zero_is_the_reference_world_and_the_seed_fixes_everything():
    none = cohort_cover_world(SIM, CohortCoverConfig(share=0.0, n_candidates=64))
    assert len(none.item_ids) == SIM.n_items
    assert (none.interactions["cover_id"] == none.interactions["item_id"]).all()
    a = cohort_cover_world(SIM, CohortCoverConfig(n_candidates=64, seed=3))
    b = cohort_cover_world(SIM, CohortCoverConfig(n_candidates=64, seed=3))
    assert a.interactions.equals(b.interactions)
    torch.testing.assert_close(a.covers, b.covers)
    with pytest.raises(ValueError, match="share and min_pull must lie in"):
        cohort_cover_world(SIM, CohortCoverConfig(share=1.5))
