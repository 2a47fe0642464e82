"""Cover throughput on one GPU: icg_rec's batched refresh vs a plain diffusers pipeline loop, same card.

    python -m eval.gpu.bench_refresh_gpu [--covers 64 --batch-size 16 --steps 20]   # GPU host
    python -m eval.gpu.bench_refresh_gpu --tiny                                     # CPU smoke run

SD-1.5-size UNet and VAE with random weights (throughput does not depend on them) at 512x512, 20 DDIM
steps, guidance 3, fp16. Baseline: a stock `StableDiffusionPipeline` called once per cover with the
cover's conditioning tokens as `prompt_embeds`, which is how a per-user loop is usually written. Treatment:
`refresh_covers` over (item, cohort) work, batching covers across cohorts. Both use the same UNet/VAE.
Last line: `baseline_covers_per_s=A icg_covers_per_s=B speedup=X`.
Not run yet: the tasks that wrote it had no GPU.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.generator import PipelineCoverGenerator
from icg_rec.cohorts.refresh import refresh_covers
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.encoders.base import TextEncoder
from icg_rec.encoders.small import ColourGridEncoder
from icg_rec.generation.adapter import AdapterConfig, CoverAdapter
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.prompter import MetaTokenPrompter, PrompterConfig
from icg_rec.generation.refiner import RefinerConfig, UserRefiner


class HashText(TextEncoder):
    """Deterministic pseudo-embeddings of titles: no text model needed to time the UNet."""

    name, dim = "hash-text", 32

    def encode(self, texts, batch_size=64, progress=False):
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=32) for t in texts]).astype(
            "f4"
        )


def backbone(tiny: bool) -> tuple[UNet2DConditionModel, AutoencoderKL]:
    if tiny:
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768, norm_num_groups=8,
        )  # fmt: skip
        vae = AutoencoderKL(
            block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
        )  # fmt: skip
        return unet, vae
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # the SD-1.5 layout defaults
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
    )  # fmt: skip
    return unet, vae


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--covers", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="tiny UNet on CPU: checks that the script runs")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    unet, vae = backbone(args.tiny)
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    prompter = MetaTokenPrompter.build(
        PrompterConfig(hidden_size=64, num_layers=2, num_heads=4, num_meta_tokens=4, image_prefix_tokens=2),
        ColourGridEncoder(image_size=64).freeze(),
        HashText(),
    )
    adapter = CoverAdapter(AdapterConfig(meta_dim=64, num_tokens=8, cross_attention_dim=768, heads=1))
    icg = ICGPipeline(unet, scheduler, prompter, UserRefiner(RefinerConfig(16, 64)), adapter, vae)
    icg.to(device=device, dtype=dtype)

    n_items, n_cohorts = args.covers // 4, 3  # 3 cohorts + the generic cover = 4 covers per item
    with tempfile.TemporaryDirectory() as tmp:
        world = SimWorld.generate(
            SimConfig(n_users=100, n_items=max(n_items, 40), n_cohorts=n_cohorts, seed=0)
        )
        items = world.save_covers(Path(tmp) / "ref").items.head(n_items)
        cohorts = UserCohorts(CohortConfig(n_cohorts=n_cohorts)).fit(
            np.arange(100), np.random.default_rng(0).normal(size=(100, 16)).astype("f4")
        )
        generator = PipelineCoverGenerator(
            icg, items["item_id"], items["title"], items["image_path"], args.steps, 3.0, version="bench"
        )
        stock = StableDiffusionPipeline(
            vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False,
        ).to(device)  # fmt: skip
        tokens = torch.randn(1, 8, 768, device=device, dtype=dtype)
        size = unet.config.sample_size * 8
        # one short untimed call first, so CUDA/cuDNN start-up is charged to neither side
        stock(
            prompt_embeds=tokens, negative_prompt_embeds=torch.zeros_like(tokens), num_inference_steps=2,
            guidance_scale=3.0, height=size, width=size, output_type="pt",
        )  # fmt: skip
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        _, stats = refresh_covers(items, cohorts, generator, Path(tmp) / "out", batch_size=args.batch_size)
        sync()
        icg_rate = stats.generated / (time.perf_counter() - start)

        sync()
        start = time.perf_counter()
        for i in range(stats.generated):
            stock(
                prompt_embeds=tokens, negative_prompt_embeds=torch.zeros_like(tokens), num_inference_steps=args.steps,
                guidance_scale=3.0, height=size, width=size, output_type="pt",
                generator=torch.Generator(device).manual_seed(i),
            )  # fmt: skip
        sync()
        base_rate = stats.generated / (time.perf_counter() - start)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        f"device {name}, {stats.generated} covers of {size}x{size}, {args.steps} steps, batch {args.batch_size}"
    )
    print(
        f"baseline_covers_per_s={base_rate:.3f} icg_covers_per_s={icg_rate:.3f} speedup={icg_rate / base_rate:.2f}"
    )


if __name__ == "__main__":
    main()
