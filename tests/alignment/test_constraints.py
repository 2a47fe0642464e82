"""Constrained DRaFT: floors on held-out rewards, multipliers, the kept state, the trade-off report, seeds."""

import json
import math

import pytest
import torch

from icg_rec.alignment import (
    AlignConfig,
    Audience,
    ConstraintState,
    HeldOutPairs,
    RewardAligner,
    derive_seed,
    tradeoff_markdown,
)
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig

FAST = dict(batch_size=4, num_inference_steps=3, grad_steps=2, learning_rate=5e-2, anchor_weight=0.0)


class Darkness:
    """1 - mean pixel: it falls as the brightness objective climbs."""

    name = "darkness"
    differentiable = True

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        return 1.0 - inputs.images.mean(dim=(1, 2, 3))  # (B,)


class Brightness(Darkness):
    name = "brightness"

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        return inputs.images.mean(dim=(1, 2, 3))  # (B,)


def _reward() -> MultiReward:
    config = MultiRewardConfig(weights={"brightness": 1.0, "darkness": 0.0}, normalize=True)
    return MultiReward({"brightness": Brightness(), "darkness": Darkness()}, config)


@pytest.fixture
def held_out() -> HeldOutPairs:
    gen = torch.Generator().manual_seed(5)
    users = Audience(user_ids=torch.tensor([7, 8, 9, 7]), vectors=torch.randn(4, 4, generator=gen))
    return HeldOutPairs(torch.tensor([0, 1, 2, 3]), users)


def _aligner(pipeline_factory, steps: int, **config) -> RewardAligner:
    settings = dict(FAST, steps=steps, validate_every=2, sample_pairs=2, checkpoint_every=100) | config
    return RewardAligner(pipeline_factory(), _reward(), AlignConfig(objective="brightness", **settings))


def test_state_floors_multipliers_feasibility_and_the_kept_row():
    state = ConstraintState({"rel": 0.9, "neg": 0.5}, "obj", dual_lr=2.0, max_multiplier=1.0)
    state.record(0, {"obj": 1.0, "rel": 0.2, "neg": -0.4})
    assert state.floor("rel") == pytest.approx(0.18) and state.floor("neg") == pytest.approx(-0.6)
    row = state.record(5, {"obj": 2.0, "rel": 0.17, "neg": -0.5})  # rel below its floor by 0.01
    assert row["feasible"] == 0.0 and row["rel_share"] == pytest.approx(0.85) and math.isnan(row["neg_share"])
    assert state.multipliers == pytest.approx({"rel": 2.0 * 0.01 / 0.2, "neg": 0.0})  # neg above: stays 0
    state.record(9, {"obj": 1.5, "rel": 0.3, "neg": -0.5})
    assert state.best == 2 and state.multipliers["rel"] == 0.0  # feasible and above: the multiplier falls
    state.record(12, {"obj": 1.2, "rel": 0.0, "neg": -0.5})
    assert state.best == 2 and state.multipliers["rel"] == 1.0  # capped at max_multiplier
    again = ConstraintState({"rel": 0.9, "neg": 0.5}, "obj", 2.0, 1.0)
    again.load_json(json.loads(json.dumps(state.to_json())))
    assert json.dumps(again.to_json()) == json.dumps(state.to_json())  # NaN shares: compare the text
    table = tradeoff_markdown(state.validations, "obj", state.best)
    assert table.splitlines()[0].startswith("| step | obj | rel |") and "| 9 | 1.5 |" in table
    assert table.splitlines()[4].endswith("| yes | **kept** |")
    with pytest.raises(ValueError, match=r"share for 'rel' must be in \(0, 1\]"):
        ConstraintState({"rel": 1.2}, "obj", 1.0, 1.0)


def _held_out_darkness(aligner, held_out) -> float:
    return aligner._validate(held_out, {})["darkness"]


def test_without_a_floor_brightness_wins_and_with_one_the_kept_state_meets_it(
    pipeline_factory, items, audience, held_out
):
    free = _aligner(pipeline_factory, 8, keep="last").fit(items, audience, held_out=held_out)
    start = free.validations_[0]["darkness"]
    assert free.validations_[-1]["darkness"] < 0.98 * start  # the objective trades darkness away

    bound = _aligner(pipeline_factory, 8, constraints={"darkness": 0.98}, dual_lr=50.0)
    bound.fit(items, audience, held_out=held_out)
    kept = bound.validations_[[int(r["step"]) for r in bound.validations_].index(bound.kept_step_)]
    assert kept["feasible"] == 1.0 and kept["darkness"] >= 0.98 * start
    assert _held_out_darkness(bound, held_out) == pytest.approx(kept["darkness"], abs=1e-6)  # restored
    assert max(h["multiplier_darkness"] for h in bound.history_) > 0  # the multiplier pushed back
    feasible = [r["brightness"] for r in bound.validations_ if r["feasible"]]
    assert kept["brightness"] == max(feasible)


def test_monitors_are_logged_and_change_nothing(pipeline_factory, items, audience, held_out):
    plain = _aligner(pipeline_factory, 4, constraints={"darkness": 0.97}, dual_lr=5.0)
    plain.fit(items, audience, held_out=held_out)
    watched = _aligner(pipeline_factory, 4, constraints={"darkness": 0.97}, dual_lr=5.0)
    watched.fit(items, audience, held_out=held_out, monitors={"judge": lambda x: x.images[:, 0].mean((1, 2))})
    assert [{k: v for k, v in r.items() if k != "judge"} for r in watched.validations_] == plain.validations_
    assert all("judge" in r for r in watched.validations_) and watched.history_ == plain.history_


def test_resume_with_constraints_equals_one_run_and_writes_the_tradeoff(
    pipeline_factory, items, audience, held_out, tmp_path
):
    config = dict(constraints={"darkness": 0.97}, dual_lr=20.0, checkpoint_every=3)
    whole = _aligner(pipeline_factory, 6, **config).fit(
        items, audience, tmp_path / "whole", held_out=held_out
    )
    _aligner(pipeline_factory, 4, **config).fit(items, audience, tmp_path / "split", held_out=held_out)
    resumed = _aligner(pipeline_factory, 6, **config)
    resumed.fit(items, audience, tmp_path / "split", resume=True, held_out=held_out)
    assert resumed.validations_ == whole.validations_ and resumed.history_ == whole.history_
    assert resumed.kept_step_ == whole.kept_step_
    for a, b in zip(whole.trained_state().values(), resumed.trained_state().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    report = json.loads((tmp_path / "whole" / "tradeoff.json").read_text())
    assert report["constraints"] == {"darkness": 0.97} and len(report["validations"]) == 4  # steps 0 2 4 6
    assert "**kept**" in (tmp_path / "whole" / "tradeoff.md").read_text()


def test_lora_init_and_arm_seeds_do_not_depend_on_the_global_stream(pipeline_factory, items, audience):
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        aligner = _aligner(pipeline_factory, 0, lora_rank=2, seed=3)
        states.append(aligner.fit(items, audience).trained_state())
    for key, value in states[0].items():
        torch.testing.assert_close(value, states[1][key], rtol=0, atol=0)
    assert derive_seed(0, "arm", "personal") == derive_seed(0, "arm", "personal")
    assert len({derive_seed(0, "arm", "a"), derive_seed(0, "arm", "b"), derive_seed(1, "arm", "a")}) == 3
    assert 0 <= derive_seed(7, "x") < 2**63


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (dict(constraints={"relevance": 0.9}), r"lack.*\['brightness', 'darkness'\]"),
        (dict(constraints={"brightness": 0.9}), "objective 'brightness' must be an unconstrained"),
        (dict(keep="first"), "keep must be 'best' or 'last'"),
        (dict(validate_every=0), "validate_every must be >= 1"),
    ],
)
def test_bad_constraint_settings_are_refused(pipeline_factory, items, audience, held_out, config, message):
    with pytest.raises(ValueError, match=message):
        _aligner(pipeline_factory, 1, **config).fit(items, audience, held_out=held_out)


def test_constraints_need_held_out_users_outside_the_audience(pipeline_factory, items, audience, held_out):
    with pytest.raises(ValueError, match="pass fit\\(held_out=...\\)"):
        _aligner(pipeline_factory, 1, constraints={"darkness": 0.9}).fit(items, audience)
    inside = HeldOutPairs(torch.tensor([0]), Audience(torch.tensor([1]), torch.zeros(1, 4)))
    with pytest.raises(ValueError, match=r"held-out users \[1\] are also in the training audience"):
        _aligner(pipeline_factory, 1).fit(items, audience, held_out=inside)
    with pytest.raises(ValueError, match=r"monitor name\(s\) \['darkness'\] clash"):
        _aligner(pipeline_factory, 1).fit(
            items, audience, held_out=held_out, monitors={"darkness": Darkness()}
        )


def test_another_operating_point_is_a_shorter_run_kept_last(pipeline_factory, items, audience, held_out):
    config = dict(constraints={"darkness": 0.99}, dual_lr=20.0)
    long = _aligner(pipeline_factory, 6, **config).fit(items, audience, held_out=held_out)
    point = int(long.validations_[1]["step"])  # step 2, whatever the kept one is
    short = _aligner(pipeline_factory, point, keep="last", **config).fit(items, audience, held_out=held_out)
    assert short.validations_ == long.validations_[:2]
    replay = _aligner(pipeline_factory, long.kept_step_, keep="last", **config).fit(
        items, audience, held_out=held_out
    )
    for key, value in long.trained_state().items():  # the long run ends holding its kept state
        torch.testing.assert_close(value, replay.trained_state()[key], rtol=0, atol=0)
