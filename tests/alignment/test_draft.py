import pytest
import torch

from icg_rec.alignment import AlignConfig, Audience, RewardAligner
from icg_rec.errors import CheckpointError, SchemaError

FAST = dict(batch_size=4, num_inference_steps=3, grad_steps=2, learning_rate=5e-2, anchor_weight=0.0)


def _mean_reward(aligner, items, audience) -> float:
    """Brightness of fixed-noise covers for every (item, user 0) pair."""
    pipe = aligner.pipeline
    index = torch.arange(len(items))
    with torch.no_grad():
        covers = pipe.generate_with_grad(
            aligner._batch(index),
            audience.vectors[[0] * len(items)],
            pipe.noise_for(range(100, 104)),
            3,
            0,
            1.0,
        )
    return float(covers.mean())


def test_alignment_moves_a_known_differentiable_reward_its_way(
    pipeline_factory, brightness_reward, items, audience
):
    means = {}
    for sign in (1.0, -1.0):
        aligner = RewardAligner(
            pipeline_factory(), brightness_reward(weight=sign), AlignConfig(steps=0, **FAST)
        )
        aligner.fit(items, audience)
        before = _mean_reward(aligner, items, audience)
        aligner.config.steps = 8
        aligner.fit(items, audience)
        means[sign] = _mean_reward(aligner, items, audience)
        assert sign * (means[sign] - before) > 0, (sign, before, means[sign])
    assert means[1.0] - means[-1.0] > 0.02, means  # brighter when rewarded for brightness than when penalised
    assert len(aligner.history_) == 8
    assert set(aligner.history_[0]) == {"loss", "reward_total", "reward_brightness"}


def test_gradients_reach_adapter_refiner_and_lora_but_not_frozen_parts(
    pipeline_factory, brightness_reward, items, audience
):
    pipe = pipeline_factory()
    aligner = RewardAligner(
        pipe,
        brightness_reward(),
        AlignConfig(
            steps=0, lora_rank=2, anchor_weight=1.0, **{k: v for k, v in FAST.items() if k != "anchor_weight"}
        ),
    )
    aligner.fit(items, audience)
    pipe.adapter.resampler.latents.data.add_(0.1)  # move off the anchor so the anchor term has a gradient too
    logged = aligner._step(torch.Generator().manual_seed(0))
    logged["loss"].backward()
    assert logged["anchor"] > 0
    assert all(p.grad is not None for p in pipe.adapter.parameters())
    assert pipe.refiner.scale.weight.grad.abs().sum() > 0
    assert pipe.refiner.shift.weight.grad.abs().sum() > 0
    lora = {n: p for n, p in pipe.unet.named_parameters() if "lora_B" in n}
    assert lora and any(p.grad.abs().sum() > 0 for p in lora.values())
    frozen = [p for n, p in pipe.unet.named_parameters() if "lora_" not in n] + list(
        pipe.prompter.parameters()
    )
    assert all(not p.requires_grad and p.grad is None for p in frozen)


def test_the_anchor_holds_the_generic_tokens_and_leaves_the_users_free(
    pipeline_factory, brightness_reward, items, audience
):
    pipe = pipeline_factory()
    aligner = RewardAligner(pipe, brightness_reward(), AlignConfig(steps=0, **dict(FAST, anchor_weight=1.0)))
    aligner.fit(items, audience)
    with torch.no_grad():
        pipe.refiner.shift.weight.normal_(generator=torch.Generator().manual_seed(0))  # a personalization
    assert aligner._step(torch.Generator().manual_seed(0))["anchor"] < 1e-10  # rounding of attention kernels
    with torch.no_grad():
        pipe.adapter.resampler.latents.add_(0.1)  # a change of the generic cover
    assert aligner._step(torch.Generator().manual_seed(0))["anchor"] > 1e-4


def test_resume_gives_the_same_weights_as_one_run(
    pipeline_factory, brightness_reward, items, audience, tmp_path
):
    config = dict(FAST, anchor_weight=0.5, sample_pairs=2, checkpoint_every=100)
    whole = RewardAligner(pipeline_factory(), brightness_reward(True), AlignConfig(steps=4, **config))
    whole.fit(items, audience, tmp_path / "whole")
    RewardAligner(pipeline_factory(), brightness_reward(True), AlignConfig(steps=2, **config)).fit(
        items, audience, tmp_path / "split"
    )
    resumed = RewardAligner(pipeline_factory(), brightness_reward(True), AlignConfig(steps=4, **config))
    resumed.fit(items, audience, tmp_path / "split", resume=True)
    assert resumed.step_ == 4 and len(resumed.history_) == 4
    assert resumed.history_ == whole.history_
    for a, b in zip(whole.pipeline.adapter.parameters(), resumed.pipeline.adapter.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(
        whole.pipeline.refiner.scale.weight, resumed.pipeline.refiner.scale.weight, rtol=0, atol=0
    )
    assert (tmp_path / "whole" / "contact_sheet.png").is_file()
    assert (tmp_path / "whole" / "pipeline" / "adapter").is_dir()


def test_resume_with_another_lora_rank_is_refused(
    pipeline_factory, brightness_reward, items, audience, tmp_path
):
    RewardAligner(pipeline_factory(), brightness_reward(), AlignConfig(steps=1, sample_pairs=1, **FAST)).fit(
        items, audience, tmp_path
    )
    aligner = RewardAligner(
        pipeline_factory(), brightness_reward(), AlignConfig(steps=2, lora_rank=2, **FAST)
    )
    with pytest.raises(CheckpointError, match="lora_rank"):
        aligner.fit(items, audience, tmp_path, resume=True)


def test_bad_inputs_are_refused(pipeline_factory, brightness_reward, frozen_reward, items, audience):
    with pytest.raises(ValueError, match="grad_steps"):
        RewardAligner(
            pipeline_factory(), brightness_reward(), AlignConfig(steps=1, **dict(FAST, grad_steps=0))
        ).fit(items, audience)
    with pytest.raises(ValueError, match="differentiable"):
        RewardAligner(pipeline_factory(), frozen_reward, AlignConfig(steps=1, **FAST)).fit(items, audience)
    wide = Audience(user_ids=torch.arange(2), vectors=torch.zeros(2, 7))
    with pytest.raises(SchemaError, match="user_dim=4"):
        RewardAligner(pipeline_factory(), brightness_reward(), AlignConfig(steps=1, **FAST)).fit(items, wide)
