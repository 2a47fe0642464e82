"""Presets: run sizes that fit the hardware.

- `tiny`: a 50-item, 200-user, 5,000-impression catalogue end to end in a few minutes on 2 CPU cores;
  shows that everything runs, not that covers are good.
- `cpu` (the defaults of RunConfig): today's quickstart scale (2,000 users, 400 items) in about ten
  minutes on 2 CPU cores, with the embedded small generator.
- `gpu`: a local SD-1.5-layout diffusion folder and a local VLM / causal LM (set both in --config:
  `[warmup.generator] diffusion = "..."`, `[warmup.generator.prompter] backbone = "..."`), 512 px covers,
  EfficientNet-Lite0 perception, CUDA.
- `quickstart`: the SimWorld quickstart (`icg-rec quickstart`), the `cpu` preset on a SimWorld.
"""

from dataclasses import replace

from icg_rec.pipeline.config import RunConfig

PRESETS = ("tiny", "cpu", "gpu", "quickstart")


def preset(name: str) -> RunConfig:
    """The RunConfig of a preset.

    Args:
        name: one of PRESETS.

    Returns:
        A fresh RunConfig (safe to modify).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {list(PRESETS)}")
    config = RunConfig()
    if name == "tiny":
        return _tiny(config)
    if name == "gpu":
        return _gpu(config)
    return config  # cpu, quickstart


def _tiny(config: RunConfig) -> RunConfig:
    config.rewards.personalized = replace(config.rewards.personalized, epochs=4)
    config.rewards.relevance = replace(config.rewards.relevance, epochs=30)
    config.rewards.n_boot = 200
    config.warmup.trainer = replace(
        config.warmup.trainer, steps=60, batch_size=16, checkpoint_every=20, sample_items=4
    )
    config.align.draft = replace(
        config.align.draft,
        steps=16,
        batch_size=4,
        num_inference_steps=4,
        grad_steps=1,
        checkpoint_every=8,
        sample_pairs=4,
        validate_every=8,
    )
    config.align.held_out_users, config.align.held_out_items = 8, 2  # 16 validation pairs
    config.cohorts = replace(config.cohorts, n_cohorts=4)
    config.refresh = replace(config.refresh, num_inference_steps=4)
    config.lift.cover_arms = replace(
        config.lift.cover_arms, n_folds=3, lift=replace(config.lift.cover_arms.lift, seeds=[0], n_boot=200)
    )
    return config


def _gpu(config: RunConfig) -> RunConfig:
    config.device, config.dtype, config.threads = "cuda", "bfloat16", 4
    config.encode = replace(config.encode, image_size=512, image_encoder="efficientnet-lite0")
    config.rewards.personalized = replace(config.rewards.personalized, cover_tower="embedding")
    config.rewards.relevance = replace(config.rewards.relevance, shared_dim=256, epochs=40, batch_size=256)
    generator = config.warmup.generator
    config.warmup.generator = replace(
        generator, diffusion="", num_tokens=16, prompter=replace(generator.prompter, backbone="")
    )  # "": the folders must be set in --config
    config.warmup.trainer = replace(
        config.warmup.trainer,
        steps=2000,
        batch_size=8,
        learning_rate=1e-4,
        checkpoint_every=200,
        sample_steps=20,
    )
    config.align.draft = replace(
        config.align.draft, steps=200, batch_size=4, learning_rate=1e-4, num_inference_steps=20, grad_steps=1,
        gradient_checkpointing=True, checkpoint_every=25,
    )  # fmt: skip
    config.refresh = replace(config.refresh, num_inference_steps=20, guidance_scale=3.0, batch_size=16)
    return config
