"""Stage `warmup`: the ICG generator built at the run's widths and warmed up on the reference covers."""

from dataclasses import dataclass, field, replace
from pathlib import Path

from icg_rec.generation.backbones import GeneratorConfig
from icg_rec.generation.prompter import PrompterConfig
from icg_rec.generation.warmup import WarmupConfig
from icg_rec.pipeline.encode import Encoded
from icg_rec.pipeline.prepare import Prepared
from icg_rec.pipeline.rewards import Rewards
from icg_rec.pipeline.stage import StageOutput
from icg_rec.pipeline.timing import fit_with_estimate


def _embedded_generator() -> GeneratorConfig:
    return GeneratorConfig(
        cross_attention_dim=64,
        num_tokens=4,
        prompter=PrompterConfig(
            hidden_size=64, num_layers=2, num_heads=4, num_meta_tokens=4, image_prefix_tokens=2
        ),
    )


def _trainer() -> WarmupConfig:
    # lr 1e-3, batch 16: eval.alignment's warm-up, whose covers read their item (held-out relevance 0.54;
    # lr 2e-3, batch 32 left the generator item-blind: 0.04)
    return WarmupConfig(
        steps=450,
        batch_size=16,
        learning_rate=1e-3,
        sample_steps=6,
        guidance_scale=1.0,
        timestep_power=2.0,  # favour high noise, where the covers' item conditioning is learned
        checkpoint_every=50,
    )


@dataclass
class WarmupStageConfig:
    generator: GeneratorConfig = field(
        default_factory=_embedded_generator
    )  # resolution = the encode stage's cover size, user_dim = the reward model's width
    trainer: WarmupConfig = field(
        default_factory=_trainer
    )  # denoising warm-up (train_unet: embedded UNet only)


@dataclass(frozen=True)
class Warmed(StageOutput):
    """pipeline/ (ICGPipeline.save_pretrained), checkpoint/, contact_sheet.png."""

    def pipeline(self, encoded: Encoded, device: str = "cpu"):
        """The warmed-up ICGPipeline, with the encode stage's perception, on `device`."""
        from icg_rec.generation.pipeline import ICGPipeline

        folder = self.path("pipeline")
        return ICGPipeline.from_pretrained(folder, encoded.image_encoder(), encoded.text_encoder()).to(device)


def generator_config(config: WarmupStageConfig, encoded: Encoded, rewards: Rewards) -> GeneratorConfig:
    """The stage's GeneratorConfig at the widths of its inputs: cover size and the reward's user width."""
    generator = config.generator
    for name, value in (
        ("diffusion", generator.diffusion),
        ("prompter backbone", generator.prompter.backbone),
    ):
        if value == "":
            raise ValueError(
                f"[warmup.generator] {name} is empty: this preset expects a local folder "
                "(diffusion: SD-1.5 layout; prompter.backbone: an HF VLM or causal LM); set it in --config"
            )
    size = int(encoded.tensors()["pixels"].shape[-1])
    return replace(generator, resolution=size, user_dim=rewards.user_dim())


def warmup(
    config: WarmupStageConfig,
    prepared: Prepared,
    encoded: Encoded,
    rewards: Rewards,
    folder: Path,
    device: str = "cpu",
    dtype: str = "float32",
) -> Warmed:
    """Builds the generator and warms it up by denoising the reference covers (no labels).

    Args:
        config: generator and trainer settings.
        prepared: the item titles.
        encoded: the reference covers as pixels and the perception encoders.
        rewards: the reward model, whose user width the generator's refiner reads.
        folder: the stage folder (a checkpoint there is resumed).
        device: where the pipeline trains.
        dtype: the generator's autocast dtype while training ("float32": none).

    Returns:
        The warmed-up pipeline.
    """
    import torch

    from icg_rec.generation.backbones import build_pipeline
    from icg_rec.generation.warmup import WarmupTrainer

    torch.manual_seed(config.trainer.seed)
    generator = generator_config(config, encoded, rewards)
    pipe = build_pipeline(generator, encoded.image_encoder(), encoded.text_encoder())
    titles = prepared.items()["title"].to_list()
    images = encoded.tensors()["pixels"]
    trainer = replace(
        config.trainer, train_unet=generator.diffusion is None
    )  # a pretrained UNet stays frozen

    def fit(settings: WarmupConfig, resume: bool) -> None:
        WarmupTrainer(pipe, settings, device=device, dtype=dtype).fit(titles, images, folder, resume=resume)

    fit_with_estimate(fit, trainer, folder / "checkpoint", device, "warmup")
    return Warmed(folder)
