"""Backbone loading: an SD-1.5-layout diffusion folder or the embedded pixel-space UNet, plus the MLLM.

The embedded UNet is a small `UNet2DConditionModel` built from config that denoises 3-channel pixels
(no VAE) at `resolution` x `resolution`. It is random until warm-up trains it: it is a test bed sized
for a 2-core CPU, not a pretrained image model.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from icg_rec.errors import CheckpointError
from icg_rec.generation.adapter import AdapterConfig, CoverAdapter
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.prompter import MetaTokenPrompter, PrompterConfig
from icg_rec.generation.refiner import RefinerConfig, UserRefiner
from icg_rec.io import config_from_dict

POOL_HEADS = 4  # attention-pooling heads of the embedded UNet's pooled-token path


@dataclass
class GeneratorConfig:
    diffusion: str | None = None  # local SD-1.5-layout folder (unet/, scheduler/, vae/); None = embedded UNet
    resolution: int = 64  # embedded UNet: cover side in pixels
    cross_attention_dim: int = 64  # embedded UNet: cross-attention width (a loaded UNet brings its own)
    num_tokens: int = 8  # adapter tokens handed to the UNet (K)
    adapter_heads: int = 1  # resampler heads (inner width heads * 64)
    user_dim: int = 32  # width of the user embeddings the refiner reads
    prompter: PrompterConfig = field(default_factory=PrompterConfig)  # MLLM + meta tokens


def generator_config_from_dict(values: dict[str, Any], source: str = "config") -> GeneratorConfig:
    """Builds a GeneratorConfig from a dict (e.g. TOML) with an optional nested `prompter` table."""
    values = dict(values)
    prompter = config_from_dict(PrompterConfig, values.pop("prompter", {}), source=f"{source} [prompter]")
    config = config_from_dict(GeneratorConfig, values, source=source)
    config.prompter = prompter
    return config


def embedded_unet(resolution: int, cross_attention_dim: int) -> UNet2DConditionModel:
    """The embedded pixel-space UNet: 3 levels (32, 64, 64), one layer per block, cross-attention below the top.

    The adapter tokens also reach every ResNet block through diffusers' `addition_embed_type="text"`
    (attention-pooled tokens added to the time embedding, as in DeepFloyd IF). Through cross-attention
    alone the UNet ignored its conditioning for the first hundreds of CPU steps (x0 error from pure noise
    0.087 with the own tokens vs 0.095 with null tokens after 200 steps on 8 items); with the pooled path
    it reached 0.013 vs 0.099 (eval/RESULTS.md, Generation).
    """
    if resolution % 4:
        raise ValueError(f"embedded UNet resolution must be a multiple of 4, got {resolution}")
    if cross_attention_dim % POOL_HEADS:
        raise ValueError(
            f"embedded UNet cross_attention_dim must be a multiple of {POOL_HEADS} (pooling heads), "
            f"got {cross_attention_dim}"
        )
    return UNet2DConditionModel(
        sample_size=resolution,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=POOL_HEADS,
    )


def embedded_scheduler() -> DDIMScheduler:
    """DDIM over a cosine schedule, clipping x0 to [-1, 1] (pixel space). The embedded UNet predicts the
    clean sample (x0): after a short CPU warm-up an epsilon-predicting UNet still leaves noise texture in
    its samples (measured in eval/RESULTS.md), while x0 prediction gives the conditional mean first."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        prediction_type="sample",
    )


def load_diffusion_backbone(
    folder: str | Path,
) -> tuple[UNet2DConditionModel, DDIMScheduler, AutoencoderKL | None]:
    """Loads UNet, scheduler (as DDIM) and VAE from a local SD-1.5-layout folder.

    Args:
        folder: holds `unet/`, `scheduler/` and, for latent models, `vae/` (diffusers `save_pretrained`).

    Returns:
        (unet, scheduler, vae or None).
    """
    folder = Path(folder)
    for sub in ("unet", "scheduler"):
        if not (folder / sub).is_dir():
            raise CheckpointError(
                f"diffusion folder {folder} has no {sub}/; expected the SD-1.5 layout (unet/, scheduler/, vae/)"
            )
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    vae = AutoencoderKL.from_pretrained(folder / "vae") if (folder / "vae").is_dir() else None
    expected = 3 if vae is None else vae.config.latent_channels
    if unet.config.in_channels != expected:
        raise CheckpointError(
            f"UNet in {folder} takes {unet.config.in_channels} channels but the "
            f"{'VAE latents have' if vae else 'pixel space (no vae/) has'} {expected}"
        )
    return unet, scheduler, vae


def build_pipeline(
    config: GeneratorConfig, image_encoder: Any = None, text_encoder: Any = None
) -> ICGPipeline:
    """Builds a fresh ICG pipeline: diffusion backbone, prompter, zero-initialised refiner, new adapter.

    Args:
        config: which backbones and sizes.
        image_encoder / text_encoder: perception for the prompter (None = the prompter config's, by default
            EfficientNet-Lite0 / MiniLM); the saved pipeline records which, to rebuild it when loaded.

    Returns:
        The pipeline, with the adapter and meta tokens untrained.
    """
    if config.diffusion is None:
        unet, scheduler, vae = (
            embedded_unet(config.resolution, config.cross_attention_dim),
            embedded_scheduler(),
            None,
        )
    else:
        unet, scheduler, vae = load_diffusion_backbone(config.diffusion)
    prompter = MetaTokenPrompter.build(config.prompter, image_encoder, text_encoder)
    meta_dim = prompter.hidden_size
    refiner = UserRefiner(RefinerConfig(user_dim=config.user_dim, meta_dim=meta_dim))
    adapter = CoverAdapter(
        AdapterConfig(
            meta_dim=meta_dim,
            num_tokens=config.num_tokens,
            cross_attention_dim=unet.config.cross_attention_dim,
            heads=config.adapter_heads,
        )
    )
    return ICGPipeline(unet, scheduler, prompter, refiner, adapter, vae)
