import pytest
import torch

from icg_rec.errors import CheckpointError
from icg_rec.rewards.aesthetic import (
    AestheticConfig,
    AestheticReward,
    ClipAestheticReward,
    LaionAestheticHead,
)
from icg_rec.rewards.base import RewardInputs


def test_flat_grey_image_has_known_terms():
    terms = AestheticReward().terms(torch.full((1, 3, 8, 8), 0.5))
    assert terms["contrast"].item() == 0.0
    assert terms["sharpness"].item() == 0.0
    assert terms["exposure"].item() == 1.0
    assert terms["colourfulness"].item() < 1e-3


def test_each_term_orders_images_as_documented():
    reward = AestheticReward()
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, 16, 16, generator=gen)
    blurred = torch.nn.functional.avg_pool2d(noise, 5, stride=1, padding=2)
    assert reward.terms(noise)["sharpness"] > reward.terms(blurred)["sharpness"]
    red_green = torch.zeros(1, 3, 8, 8)
    red_green[:, 0, :, :4] = 1.0
    red_green[:, 1, :, 4:] = 1.0
    assert (
        reward.terms(red_green)["colourfulness"]
        > reward.terms(torch.full((1, 3, 8, 8), 0.5))["colourfulness"]
    )
    assert reward.terms(torch.zeros(1, 3, 8, 8))["exposure"].item() == 0.0


def test_score_is_the_weighted_mean_and_differentiable():
    pixels = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    only_contrast = AestheticReward(AestheticConfig(colourfulness=0, contrast=2, sharpness=0, exposure=0))
    score = only_contrast(RewardInputs(images=pixels))
    torch.testing.assert_close(score, only_contrast.terms(pixels)["contrast"])
    AestheticReward()(RewardInputs(images=pixels)).sum().backward()
    assert pixels.grad.abs().sum() > 0


def test_bad_images_and_weights_raise():
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        AestheticReward()(RewardInputs(images=torch.rand(2, 1, 8, 8)))
    with pytest.raises(ValueError, match="sum to > 0"):
        AestheticReward(AestheticConfig(0, 0, 0, 0))(RewardInputs(images=torch.rand(1, 3, 8, 8)))


def test_laion_head_layout_matches_the_published_keys():
    keys = list(LaionAestheticHead().state_dict())
    assert keys == [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")]
    assert LaionAestheticHead().layers[0].weight.shape == (1024, 768)


def test_clip_aesthetic_loads_local_checkpoints_and_is_differentiable(tiny_clip, tmp_path):
    torch.manual_seed(0)
    head = LaionAestheticHead(in_dim=12)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    reward = ClipAestheticReward(tiny_clip, tmp_path / "head.pth")
    pixels = torch.rand(2, 3, 20, 20).requires_grad_(True)
    score = reward(RewardInputs(images=pixels))
    score.sum().backward()
    assert score.shape == (2,) and pixels.grad.abs().sum() > 0
    with pytest.raises(CheckpointError, match="input width 12"):
        torch.save(LaionAestheticHead(in_dim=768).state_dict(), tmp_path / "big.pth")
        ClipAestheticReward(tiny_clip, tmp_path / "big.pth")
    with pytest.raises(CheckpointError, match="no config.json"):
        ClipAestheticReward(tmp_path / "nowhere", tmp_path / "head.pth")
