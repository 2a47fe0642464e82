"""eval.alignment on a tiny world: an arm alone equals the same arm run beside others; helpers."""

import argparse

import numpy as np
import pytest
import torch

# in-process: pytest runs from the repository root
from eval import alignment as ev
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.encoders.small import ColourGridEncoder
from icg_rec.rewards.aesthetic import AestheticReward
from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig
from icg_rec.rewards.relevance import RelevanceConfig, RelevanceModel, RelevanceReward


class OracleReward:
    name, differentiable = "judge", True

    def __init__(self, world: SimWorld) -> None:
        self.world = world

    def __call__(self, x) -> torch.Tensor:
        return self.world.oracle.click_prob(x.user_ids, x.images, x.item_ids)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, tiny_perception):
    world = SimWorld.generate(
        SimConfig(n_users=40, n_items=12, n_cohorts=2, image_size=8, impressions_per_user=6)
    )
    titles, ids = world.dataset.items["title"].to_list(), torch.arange(12)
    text, grid = tiny_perception[1](), ColourGridEncoder(2, 8).freeze()
    relevance = RelevanceModel(RelevanceConfig(shared_dim=4, epochs=2, batch_size=4))
    relevance.fit(text.encode(titles), grid(world.covers).numpy(), seed=0).freeze()
    config = PersonalizedConfig(cover_tower="cnn", image_size=8, cnn_channels=2, dim=4, epochs=1)
    covers = CoverInputs(ids.numpy(), world.covers.numpy())
    model = ev.reward_model(world.dataset.interactions, covers, config, 0, tmp_path_factory.mktemp("r") / "m")
    rewards = {"aesthetic": AestheticReward(), "relevance": RelevanceReward(relevance, text, grid),
               "personalized": model, "judge": OracleReward(world)}  # fmt: skip
    items = ev.al.ItemSet(titles, world.covers, ids)
    return ev.make_setup(items, rewards, np.arange(40), world.user_cohort.numpy(), 0, text, grid)


def test_an_arm_alone_equals_the_same_arm_beside_others(tiny_setup, tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "SIZE", 8)  # an 8 px generator sampled in 2 steps
    monkeypatch.setattr(ev, "STEPS", 2)
    weights, own = ev.ARMS["constrained"]
    monkeypatch.setitem(ev.ARMS, "constrained", (weights, own | {"steps": 3}))
    monkeypatch.setattr(ev, "ceiling", lambda *a, **k: {"judge_ctr_ratio": 1.0, "relevance_share": 1.0})
    args = argparse.Namespace(warmup_steps=2, align_steps=2)
    alone = ev.run_world(
        tiny_setup, argparse.Namespace(**vars(args), arms=["constrained"]), 0, tmp_path / "a", 0.0
    )
    both = ev.run_world(
        tiny_setup, argparse.Namespace(**vars(args), arms=["public", "constrained"]), 0, tmp_path / "b", 0.0
    )
    assert alone["means"]["constrained"] == both["means"]["constrained"]
    assert alone["validations"]["constrained"] == both["validations"]["constrained"]
    assert set(both["arms"]["constrained"]) >= {"judge_ctr_share", "ctr_vs_public", "own_vs_other_cohort"}
    assert len(tiny_setup.test) == 2 * 8 * 4 and len(tiny_setup.valid) == 2 * 4 * 4
    held = set(tiny_setup.test.users.user_ids.tolist()) | set(tiny_setup.valid.users.user_ids.tolist())
    assert (
        not held & set(tiny_setup.audience.user_ids.tolist()) and len(held) + len(tiny_setup.audience) == 40
    )


def test_the_other_cohort_control_is_the_next_cohorts_mean_test_user(tiny_setup):
    vectors, cohorts = tiny_setup.test.users.vectors, tiny_setup.cohorts
    assert set(cohorts.tolist()) == {0, 1}
    for own, other in ((0, 1), (1, 0)):
        mean = vectors[torch.from_numpy(cohorts == other)].mean(0)
        torch.testing.assert_close(tiny_setup.wrong[torch.from_numpy(cohorts == own)], mean.expand(32, -1))


def test_paired_delta_clusters_the_interval_by_user():
    out = ev.paired_delta(np.array([1.0, 3.0, 2.0, 2.0]), np.ones(4), np.array([0, 0, 1, 1]))
    assert out == {"delta": 1.0, "ci95": [1.0, 1.0], "share": 2.0}  # per-user means 1 and 1: no spread


def test_summarise_gives_mean_and_sd_over_worlds_and_the_mean_curve():
    def world(share: float, public: float) -> dict:
        arm = {
            "judge_ctr_share": share,
            "relevance_share": 1.0,
            "aesthetic_share": 1.0,
            "ctr_vs_public": {"share": public},
        }
        curve = [
            {"step": 0.0, "judge": 0.1, "relevance": 0.2},
            {"step": 20.0, "judge": 0.1 * share, "relevance": 0.18},
        ]
        ceilings = {"judge_ctr_share": 1.5, "relevance_share": 0.9}
        means = {"warmup": {"relevance": 0.5}, "reference": {"relevance": 0.7}}
        return {"arms": {"constrained": arm}, "validations": {"constrained": curve}, "means": means,
                "ceilings": {"personalized": ceilings, "judge": ceilings}}  # fmt: skip

    summary, lines = ev.summarise({"colour": [world(1.1, 1.2), world(1.3, 1.0)]}, ["constrained"])
    row = summary["colour/constrained"]
    assert row["judge_ctr_share"] == pytest.approx([1.2, np.std([1.1, 1.3], ddof=1)])
    assert row["ctr_vs_public"] == pytest.approx([1.1, np.std([1.2, 1.0], ddof=1)])
    assert np.allclose(row["curve"], [[0, 1.0, 1.0], [20, 1.2, 0.9]])
    assert summary["colour/ceiling_judge"]["judge_ctr_share"] == pytest.approx([1.5, 0.0])
    assert lines[2].startswith("| colour | constrained | 1.200 ± 0.141 | 1.100 ± 0.141 | 1.000 ± 0.000 |")
    assert lines[-2:] == ["- colour: relevance of the warm-up covers 0.500, of the references 0.700",
                          "- colour constrained: 0: 1.000 / 1.00, 20: 1.200 / 0.90"]  # fmt: skip


def test_the_judge_ceiling_raises_the_judge_within_its_bounds(tiny_setup):
    warm = tiny_setup.items.images[tiny_setup.test.item_index]  # (P, 3, 8, 8)
    out = ev.ceiling(tiny_setup, tiny_setup.rewards["judge"], warm, steps=20)
    assert out["judge_ctr_share"] > 1.01  # relevance_share: NaN, the tiny relevance starts below 0
    assert np.isnan(out["relevance_share"]) or out["relevance_share"] > 0.85
