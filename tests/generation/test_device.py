"""`device` / `dtype` of the warm-up trainer: CPU default, bfloat16 mixed precision, clear refusals."""

import pytest
import torch

from icg_rec.device import DeviceError
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.prompter import PrompterConfig
from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer

TITLES = ["crimson night", "blue day", "a b", "night song"]
SMALL = WarmupConfig(steps=3, batch_size=4, learning_rate=1e-3)


def _pipeline(encoders):
    torch.manual_seed(0)
    config = GeneratorConfig(
        resolution=16, cross_attention_dim=32, num_tokens=4, user_dim=4,
        prompter=PrompterConfig(hidden_size=16, num_layers=1, num_heads=2, num_meta_tokens=3, image_prefix_tokens=2),
    )  # fmt: skip
    return build_pipeline(config, *encoders)


def test_bfloat16_warmup_tracks_the_float32_one(encoders, covers):
    full = WarmupTrainer(_pipeline(encoders), SMALL).fit(TITLES, covers)
    mixed = WarmupTrainer(_pipeline(encoders), SMALL, device="cpu", dtype="bfloat16").fit(TITLES, covers)
    assert all(p.dtype == torch.float32 for p in mixed.pipeline.adapter.parameters())  # float32 weights
    assert mixed.losses_ != full.losses_  # the arithmetic really ran in bfloat16
    assert mixed.losses_ == pytest.approx(full.losses_, rel=0.05)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_warmup_on_a_missing_device_fails_before_training(encoders, covers):
    trainer = WarmupTrainer(_pipeline(encoders), SMALL, device="cuda")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        trainer.fit(TITLES, covers)
    assert not hasattr(trainer, "losses_")
    with pytest.raises(DeviceError, match="float16"):
        WarmupTrainer(_pipeline(encoders), SMALL, dtype="float16").fit(TITLES, covers)
