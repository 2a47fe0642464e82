"""Binds an ICGPipeline to an item catalogue, so that the refresh asks for covers by item id."""

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch

from icg_rec.errors import IcgRecError, UnknownIdError
from icg_rec.generation.fast import FastConfig, FastSampler
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.prompter import ImageLike
from icg_rec.validation import lookup


class PipelineCoverGenerator:
    """The refresh's `CoverGenerator` over an ICGPipeline.

    Items are prepared (perception encoders) per batch, only for the items in that batch: an incremental
    refresh then pays for the changed items alone, not for the whole catalogue. The first `generate` moves
    the pipeline to `device` and applies the `fast` switches in place (`icg_rec.generation.fast`).
    """

    def __init__(
        self,
        pipeline: ICGPipeline,
        item_ids: Sequence[int],
        titles: Sequence[str],
        references: Sequence[ImageLike],
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        version: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        fast: FastConfig | None = None,
    ) -> None:
        """Args:
        pipeline: a trained (warmed-up or aligned) ICGPipeline.
        item_ids: ids, one per title.
        titles: item titles.
        references: reference images (paths, PIL images or (3, H, W) tensors in [0, 1]).
        num_inference_steps: DDIM steps per cover.
        guidance_scale: classifier-free guidance weight.
        version: the generator version; None hashes the weights and settings (`pipeline_version`), taken
            before any fast switch touches the pipeline: precision and kernels are not part of a cover's key.
        device: "cpu" or "cuda[:N]" (see `icg_rec.device`).
        dtype: "float32", "bfloat16" or "float16" (CUDA only) for the UNet and the decoder.
        fast: speed switches (`FastConfig`; None = defaults: SDPA attention, nothing else).
        """
        if (
            isinstance(num_inference_steps, bool)
            or not isinstance(num_inference_steps, int)
            or num_inference_steps < 1
        ):
            raise IcgRecError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        if not (math.isfinite(guidance_scale) and guidance_scale >= 0):
            raise IcgRecError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
        ids = np.asarray(item_ids, dtype=np.int64)
        if not len(ids) == len(titles) == len(references):
            raise UnknownIdError(
                f"{len(ids)} item ids, {len(titles)} titles and {len(references)} references differ"
            )
        self.pipeline = pipeline
        self.order = np.argsort(ids, kind="stable")
        self.sorted_ids = ids[self.order]
        self.titles = list(titles)
        self.references = list(references)
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.version = version or pipeline_version(pipeline, num_inference_steps, guidance_scale)
        self.sampler = FastSampler(pipeline, fast, device, dtype)

    @torch.no_grad()
    def generate(
        self, item_ids: torch.Tensor, user_embeddings: torch.Tensor, seeds: list[int]
    ) -> torch.Tensor:
        """Covers (B, 3, H, W) in [0, 1] for items (B,) and users (B, user_dim), one noise seed each."""
        device = self.sampler.prepare().device_
        ids = item_ids.numpy()
        unique, inverse = np.unique(ids, return_inverse=True)
        pos, known = lookup(self.sorted_ids, unique)
        if (unknown := ~known).any():
            raise UnknownIdError(
                f"items {unique[unknown][:5].tolist()} are not in this generator's catalogue"
            )
        rows = self.order[pos]
        prepared = self.pipeline.prompter.prepare(
            [self.titles[r] for r in rows], [self.references[r] for r in rows]
        )
        index = torch.from_numpy(inverse)
        batch = {k: v[index] for k, v in prepared.items()}  # one row per cover
        noise = self.pipeline.noise_for(seeds)  # (B, C, h, w)
        images = self.sampler(
            batch, user_embeddings.to(device), noise, self.num_inference_steps, self.guidance_scale
        )  # (B, 3, H, W) on the device
        return images.cpu()  # (B, 3, H, W)


def pipeline_version(pipeline: ICGPipeline, num_inference_steps: int, guidance_scale: float) -> str:
    """sha256 over every weight of the pipeline and the sampling settings: 16 hex characters."""
    digest = hashlib.sha256(f"{num_inference_steps}|{guidance_scale}".encode())
    for name in ("unet", "prompter", "refiner", "adapter", "vae"):
        module = getattr(pipeline, name, None)
        if module is None:
            continue
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(f"{name}.{key}".encode())
            digest.update(tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
