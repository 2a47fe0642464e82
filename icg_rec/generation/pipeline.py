"""`ICGPipeline`: item title + reference image (+ user embedding) -> cover, as a diffusers pipeline.

Conditioning path: prompter (meta-token states) -> refiner (FiLM by user) -> adapter (K tokens) ->
UNet cross-attention. The null condition for classifier-free guidance is the adapter applied to all-zero
meta states (null meta tokens); warm-up trains it by dropping the condition at random.

`generate_with_grad` is the differentiable entry point for reward alignment: the caller seeds the
noise, and only the last `grad_steps` denoising steps keep a graph (see `sampling.denoise`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel
from diffusers.utils import BaseOutput
from PIL import Image

from icg_rec.errors import CheckpointError
from icg_rec.generation.adapter import CoverAdapter
from icg_rec.generation.modules import require_files
from icg_rec.generation.prompter import ImageLike, MetaTokenPrompter
from icg_rec.generation.refiner import UserRefiner
from icg_rec.generation.sampling import denoise, to_images
from icg_rec.io import read_json, verify_folder, write_folder, write_json

INDEX_NAME = "model_index.json"  # diffusers' pipeline index
SHIM_MODULE = "pipeline_icg"  # the custom-pipeline file diffusers imports ICGPipeline through
SHIM_SOURCE = (
    '"""Lets `DiffusionPipeline.from_pretrained(this folder, trust_remote_code=True)` find ICGPipeline."""\n\n'
    "from icg_rec.generation.pipeline import ICGPipeline  # noqa: F401  (needs icg_rec installed)\n"
)
# component -> (library, class) as diffusers records them in model_index.json
COMPONENTS = {
    "unet": ("diffusers", "UNet2DConditionModel"),
    "scheduler": ("diffusers", "DDIMScheduler"),
    "prompter": ("icg_rec.generation.prompter", "MetaTokenPrompter"),
    "refiner": ("icg_rec.generation.refiner", "UserRefiner"),
    "adapter": ("icg_rec.generation.adapter", "CoverAdapter"),
    "vae": ("diffusers", "AutoencoderKL"),
}


@dataclass
class ICGPipelineOutput(BaseOutput):
    images: list[Image.Image] | torch.Tensor  # PIL covers, or (B, 3, H, W) float in [0, 1]


class ICGPipeline(DiffusionPipeline):
    """Generates covers for (items, users) in batches; components are plain diffusers / torch modules."""

    _optional_components = ["vae"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
        prompter: MetaTokenPrompter,
        refiner: UserRefiner,
        adapter: CoverAdapter,
        vae: AutoencoderKL | None = None,
    ) -> None:
        super().__init__()
        adapter.check_unet(unet)
        if (
            prompter.hidden_size != adapter.config.meta_dim
            or refiner.config.meta_dim != adapter.config.meta_dim
        ):
            raise CheckpointError(
                f"meta widths disagree: prompter hidden {prompter.hidden_size}, refiner {refiner.config.meta_dim}, "
                f"adapter {adapter.config.meta_dim}; all three must be equal"
            )
        self.register_modules(
            unet=unet, scheduler=scheduler, prompter=prompter, refiner=refiner, adapter=adapter, vae=vae
        )

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of what the UNet denoises."""
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, size, size)

    def conditioning(
        self, batch: dict[str, torch.Tensor], users: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditioning tokens for prepared items and their users, and the null-condition tokens.

        Args:
            batch: `prompter.prepare(titles, images)` (or rows of it).
            users: (B, user_dim) user embeddings, or None for the generic user.

        Returns:
            cond (B, K, D) and uncond (B, K, D).
        """
        meta = self.prompter(batch).to(self.adapter.resampler.latents.dtype)  # (B, N, H)
        meta = self.refiner(meta, users)  # (B, N, H)
        cond = self.adapter(meta)  # (B, K, D)
        uncond = self.adapter(torch.zeros_like(meta))  # (B, K, D): null meta tokens
        return cond.to(self.unet.dtype), uncond.to(self.unet.dtype)

    def generate_with_grad(
        self,
        batch: dict[str, torch.Tensor],
        users: torch.Tensor | None,
        noise: torch.Tensor,
        num_inference_steps: int = 20,
        grad_steps: int = 1,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """Differentiable generation for reward alignment (truncated backprop through the last steps).

        Args:
            batch: prepared items (`prompter.prepare`).
            users: (B, user_dim) user embeddings, or None for the generic user.
            noise: (B, C, h, w) initial noise; shape `(B, *self.sample_shape)`.
            num_inference_steps: DDIM steps.
            grad_steps: the last K steps keep a graph; earlier steps run under no_grad.
            guidance_scale: classifier-free guidance weight.

        Returns:
            (B, 3, H, W) images in [0, 1] with gradient into the adapter, refiner and trainable prompter parts.
        """
        if tuple(noise.shape[1:]) != self.sample_shape:
            raise ValueError(f"noise must be (B, {self.sample_shape}), got {tuple(noise.shape)}")
        cond, uncond = self.conditioning(batch, users)
        sample = denoise(
            self.unet, self.scheduler, cond, uncond, noise.to(self.unet.dtype),
            num_inference_steps, guidance_scale, grad_steps,
        )  # fmt: skip
        return to_images(sample, self.vae)  # (B, 3, H, W)

    def noise_for(self, seeds: Sequence[int]) -> torch.Tensor:
        """Initial noise, one generator per cover so a cover does not depend on its batch: (B, C, h, w)."""
        rows = [
            torch.randn(self.sample_shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds
        ]
        return torch.stack(rows).to(self.device)

    @torch.no_grad()
    def __call__(
        self,
        titles: Sequence[str],
        images: Sequence[ImageLike],
        users: torch.Tensor | None = None,
        seed: int = 0,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        batch_size: int = 16,
        output_type: str = "pil",
    ) -> ICGPipelineOutput:
        """Generates one cover per (item, user) row.

        Args:
            titles: item titles.
            images: reference images (PIL, path, or (3, H, W) tensor in [0, 1]), one per title.
            users: (B, user_dim) user embeddings; None or a zero row = the non-personalized cover.
            seed: cover i uses noise seeded with `seed + i`.
            num_inference_steps: DDIM steps.
            guidance_scale: classifier-free guidance weight (negative = null meta tokens).
            batch_size: covers per UNet batch.
            output_type: "pil" or "pt" ((B, 3, H, W) float in [0, 1], on CPU).

        Returns:
            ICGPipelineOutput with `images`.
        """
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        titles, images = list(titles), list(images)
        if users is not None and users.shape[0] != len(titles):
            raise ValueError(f"got {users.shape[0]} user rows for {len(titles)} items; expected one per item")
        outputs = []
        progress = self.progress_bar(total=len(titles))
        for start in range(0, len(titles), batch_size):
            stop = min(start + batch_size, len(titles))
            batch = self.prompter.prepare(titles[start:stop], images[start:stop])
            rows = None if users is None else users[start:stop].to(self.device)
            noise = self.noise_for(range(seed + start, seed + stop))
            covers = self.generate_with_grad(batch, rows, noise, num_inference_steps, 0, guidance_scale)
            outputs.append(covers.float().cpu())
            progress.update(stop - start)
        progress.close()
        covers = torch.cat(outputs)  # (B, 3, H, W)
        if output_type == "pt":
            return ICGPipelineOutput(images=covers)
        arrays = (covers.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        return ICGPipelineOutput(images=[Image.fromarray(a) for a in arrays])

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """Writes the pipeline the diffusers way, atomically, with a MANIFEST.json of file hashes.

        `model_index.json` names each component's library and class; every component saves into its own
        subfolder through its `save_pretrained` (diffusers' `DiffusionPipeline.save_pretrained`). The
        folder also holds `pipeline_icg.py`, two lines that import `ICGPipeline` from the installed icg_rec,
        so that a diffusers user can load it with `DiffusionPipeline.from_pretrained(folder,
        trust_remote_code=True)`. An existing folder is replaced only once the new one is complete.
        """

        def write(folder: Path) -> None:
            super(ICGPipeline, self).save_pretrained(folder, **kwargs)
            index = read_json(folder / INDEX_NAME)
            index["_class_name"] = [SHIM_MODULE, type(self).__name__]  # diffusers' custom-pipeline form
            write_json(folder / INDEX_NAME, index)
            (folder / f"{SHIM_MODULE}.py").write_text(SHIM_SOURCE)

        write_folder(save_directory, write)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        image_encoder: Any = None,
        text_encoder: Any = None,
        torch_dtype: torch.dtype | None = None,
    ) -> "ICGPipeline":
        """Loads a pipeline folder written by `save_pretrained` (local only), after verifying every file.

        The folder's MANIFEST.json hashes are checked and `model_index.json` must name exactly the
        components below before anything is built; each component then loads through its own
        `from_pretrained`, which checks its files first. No code from the folder is run.

        Args:
            pretrained_model_name_or_path: the folder.
            image_encoder / text_encoder: perception for the prompter; None rebuilds the encoders its config
                records (a custom encoder, recorded by name only, must be passed).
            torch_dtype: optional dtype for every component (e.g. torch.bfloat16 on GPU).

        Returns:
            The pipeline.

        Raises:
            CheckpointError: a missing, extra or corrupt file, components other than ICGPipeline's, or a
                custom encoder recorded and not passed.
        """
        folder = Path(pretrained_model_name_or_path)
        verify_folder(folder, [INDEX_NAME])
        index = read_json(folder / INDEX_NAME)
        named = {  # an absent optional component is recorded as [null, null]
            name: tuple(value)
            for name, value in index.items()
            if not name.startswith("_") and value != [None, None]
        }
        expected = {name: value for name, value in COMPONENTS.items() if name != "vae" or "vae" in named}
        if named != expected:
            raise CheckpointError(
                f"{folder / INDEX_NAME} does not describe an ICGPipeline: components {named}, expected {expected}"
            )
        load = {
            "unet": lambda path: UNet2DConditionModel.from_pretrained(path),
            "scheduler": lambda path: DDIMScheduler.from_pretrained(path),
            "vae": lambda path: AutoencoderKL.from_pretrained(path),
            "prompter": lambda path: MetaTokenPrompter.from_pretrained(path, image_encoder, text_encoder),
            "refiner": lambda path: UserRefiner.from_pretrained(path),
            "adapter": lambda path: CoverAdapter.from_pretrained(path),
        }
        for name in named:  # diffusers' own loaders fall back to defaults where a config is missing
            if name in ("unet", "scheduler", "vae"):
                config = "scheduler_config.json" if name == "scheduler" else "config.json"
                require_files(folder / name, [config], f"the {name} of {folder}")
        pipeline = cls(**{name: load[name](folder / name) for name in named})
        if torch_dtype is not None:
            pipeline.to(dtype=torch_dtype)
        return pipeline
