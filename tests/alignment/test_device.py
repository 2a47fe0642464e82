"""`device` / `dtype` of both aligners: bfloat16 mixed precision on CPU, clear refusals."""

import pytest
import torch

from icg_rec.alignment import AlignConfig, DPOAligner, DPOConfig, RewardAligner
from icg_rec.device import DeviceError

FAST = dict(steps=2, batch_size=4, num_inference_steps=3, grad_steps=2, learning_rate=5e-2, anchor_weight=0.0)
DPO = dict(rounds=1, pairs_per_round=4, candidates=2, steps_per_round=1, batch_size=2, num_inference_steps=2)


def test_bfloat16_draft_tracks_float32(pipeline_factory, brightness_reward, items, audience):
    full = RewardAligner(pipeline_factory(), brightness_reward(), AlignConfig(**FAST)).fit(items, audience)
    mixed = RewardAligner(
        pipeline_factory(), brightness_reward(), AlignConfig(**FAST), device="cpu", dtype="bfloat16"
    ).fit(items, audience)
    assert all(p.dtype == torch.float32 for p in mixed.trainable_parameters())
    for a, b in zip(mixed.history_, full.history_, strict=True):
        assert a["reward_total"] == pytest.approx(b["reward_total"], abs=0.02)


def test_bfloat16_dpo_runs_a_round(pipeline_factory, brightness_reward, items, audience):
    aligner = DPOAligner(pipeline_factory(), brightness_reward(), DPOConfig(**DPO), dtype="bfloat16")
    aligner.fit(items, audience)
    assert len(aligner.history_) == 1 and torch.isfinite(torch.tensor(aligner.history_[0]["loss"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
@pytest.mark.parametrize("cls,config", [(RewardAligner, AlignConfig(**FAST)), (DPOAligner, DPOConfig(**DPO))])
def test_aligners_refuse_a_missing_device_and_float16(
    cls, config, pipeline_factory, brightness_reward, items, audience
):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        cls(pipeline_factory(), brightness_reward(), config, device="cuda").fit(items, audience)
    with pytest.raises(DeviceError, match="'float16' needs a CUDA device"):
        cls(pipeline_factory(), brightness_reward(), config, dtype="float16").fit(items, audience)
