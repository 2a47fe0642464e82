import pytest
import torch
from PIL import Image

from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.errors import SchemaError
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.prompter import PrompterConfig
from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer, reference_tensor


def _pipeline(encoders):
    torch.manual_seed(0)
    config = GeneratorConfig(
        resolution=16, cross_attention_dim=32, num_tokens=4, user_dim=4,
        prompter=PrompterConfig(hidden_size=16, num_layers=1, num_heads=2, num_meta_tokens=3, image_prefix_tokens=2),
    )  # fmt: skip
    pipe = build_pipeline(config, *encoders)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def tiny_world() -> SimWorld:
    return SimWorld.generate(SimConfig(n_users=12, n_items=8, n_cohorts=2, impressions_per_user=3, seed=0))


def test_warmup_steps_decrease_the_denoising_loss(encoders, tiny_world):
    titles = tiny_world.dataset.items["title"].to_list()
    trainer = WarmupTrainer(_pipeline(encoders), WarmupConfig(steps=25, batch_size=8, learning_rate=2e-3))
    before = trainer.evaluate(titles, tiny_world.covers, seed=1)
    trainer.fit(titles, tiny_world.covers)
    after = trainer.evaluate(titles, tiny_world.covers, seed=1)
    assert len(trainer.losses_) == 25 and trainer.step_ == 25
    assert after < 0.7 * before


def test_resumed_warmup_equals_an_uninterrupted_one(encoders, covers, tmp_path):
    titles = ["crimson night", "blue day", "a b", "night song"]
    small = dict(batch_size=2, sample_items=2, sample_steps=2, checkpoint_every=2)
    straight = WarmupTrainer(_pipeline(encoders), WarmupConfig(steps=4, **small)).fit(titles, covers)

    WarmupTrainer(_pipeline(encoders), WarmupConfig(steps=2, **small)).fit(
        titles, covers, output_dir=tmp_path
    )
    assert (tmp_path / "contact_sheet.png").is_file() and (
        tmp_path / "pipeline" / "model_index.json"
    ).is_file()
    assert Image.open(tmp_path / "contact_sheet.png").size == (2 * 16, 2 * 16)
    resumed = WarmupTrainer(_pipeline(encoders), WarmupConfig(steps=4, **small)).fit(
        titles, covers, output_dir=tmp_path, resume=True
    )
    assert resumed.step_ == 4
    assert resumed.losses_ == pytest.approx(straight.losses_, rel=1e-5)
    for a, b in zip(
        resumed.pipeline.adapter.parameters(), straight.pipeline.adapter.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_warmup_refuses_mismatched_inputs(encoders, covers):
    trainer = WarmupTrainer(_pipeline(encoders), WarmupConfig(steps=1))
    with pytest.raises(SchemaError, match="3 titles but 4 reference covers"):
        trainer.fit(["a", "b", "c"], covers)
    with pytest.raises(SchemaError, match="at least one item"):
        trainer.fit([], [])


def test_reference_tensor_resizes_and_checks_shape(covers):
    assert reference_tensor(covers, 8).shape == (4, 3, 8, 8)
    assert reference_tensor([Image.new("RGB", (20, 20), (255, 0, 0))], 8)[0, :, 0, 0].tolist() == [
        1.0,
        0.0,
        0.0,
    ]
    with pytest.raises(SchemaError, match=r"\(n, 3, H, W\)"):
        reference_tensor(torch.rand(2, 1, 8, 8), 8)


def test_timestep_power_favours_high_noise(encoders, covers):
    pipe = _pipeline(encoders)
    shares = {}
    for power in (1.0, 2.0):
        trainer = WarmupTrainer(pipe, WarmupConfig(timestep_power=power))
        steps = trainer._timesteps(4000, torch.Generator().manual_seed(0))
        assert steps.min() >= 0 and steps.max() <= 999
        shares[power] = float((steps >= 500).float().mean())
    assert abs(shares[1.0] - 0.5) < 0.03  # uniform
    assert abs(shares[2.0] - 0.5**0.5) < 0.03  # P(1 - u^2 >= 1/2) = P(u <= 1/sqrt 2)
    with pytest.raises(ValueError, match="timestep_power must be > 0, got 0.0"):
        WarmupTrainer(pipe, WarmupConfig(steps=1, timestep_power=0.0)).fit(["a"], covers[:1])
