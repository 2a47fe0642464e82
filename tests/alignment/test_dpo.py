import math

import pytest
import torch

from icg_rec.alignment import DPOAligner, DPOConfig, diffusion_dpo_loss

FAST = dict(
    pairs_per_round=4, candidates=2, steps_per_round=2, batch_size=4, num_inference_steps=3, sample_pairs=2
)


def test_dpo_loss_matches_a_hand_computed_case():
    # inside = -beta * ((1.0 - 1.5) - (2.0 - 1.5)) = beta; loss = log(1 + exp(-beta))
    loss = diffusion_dpo_loss(
        torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([1.5]), torch.tensor([1.5]), 1.0
    )
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)), abs=1e-7)
    tied = diffusion_dpo_loss(
        torch.tensor([0.3, 0.7]),
        torch.tensor([0.2, 0.9]),
        torch.tensor([0.3, 0.7]),
        torch.tensor([0.2, 0.9]),
        5.0,
    )
    assert tied.item() == pytest.approx(math.log(2.0), abs=1e-7)  # model == reference: no preference yet


def test_dpo_loss_gradient_lowers_the_winner_error():
    err_w = torch.tensor([1.0], requires_grad=True)
    err_l = torch.tensor([1.0], requires_grad=True)
    diffusion_dpo_loss(err_w, err_l, torch.tensor([1.0]), torch.tensor([1.0]), 2.0).backward()
    assert err_w.grad.item() == pytest.approx(1.0, abs=1e-7)  # d/d err_w = beta * sigmoid(0) = 1
    assert err_l.grad.item() == pytest.approx(-1.0, abs=1e-7)


def test_dpo_aligner_trains_adapter_and_refiner_and_resumes(
    pipeline_factory, brightness_reward, items, audience, tmp_path
):
    whole = DPOAligner(pipeline_factory(), brightness_reward(), DPOConfig(rounds=2, **FAST))
    start = whole.pipeline.adapter.resampler.latents.detach().clone()
    whole.fit(items, audience, tmp_path / "whole")
    assert not torch.equal(start, whole.pipeline.adapter.resampler.latents)
    assert whole.pipeline.refiner.shift.weight.abs().sum() > 0  # the refiner left its zero start
    assert all(h["margin"] > 0 for h in whole.history_)
    DPOAligner(pipeline_factory(), brightness_reward(), DPOConfig(rounds=1, **FAST)).fit(
        items, audience, tmp_path / "split"
    )
    resumed = DPOAligner(pipeline_factory(), brightness_reward(), DPOConfig(rounds=2, **FAST))
    resumed.fit(items, audience, tmp_path / "split", resume=True)
    assert resumed.history_ == whole.history_
    torch.testing.assert_close(
        resumed.pipeline.adapter.resampler.latents, whole.pipeline.adapter.resampler.latents, rtol=0, atol=0
    )


def test_dpo_needs_two_candidates(pipeline_factory, brightness_reward, items, audience):
    with pytest.raises(ValueError, match="at least 2 candidates"):
        DPOAligner(
            pipeline_factory(), brightness_reward(), DPOConfig(rounds=1, **dict(FAST, candidates=1))
        ).fit(items, audience)
