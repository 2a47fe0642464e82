"""Aesthetic / quality rewards: an offline, differentiable image-statistics scorer and a LAION-style head.

`AestheticReward` needs no model. Each term maps a (B, 3, H, W) batch in [0, 1] to (B,) in about [0, 1]:
  colourfulness  Hasler & Suesstrunk (2003): sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)
                 with rg = R - G, yb = (R + G) / 2 - B, divided by 0.5 (a very colourful image) and capped by tanh.
  contrast       RMS contrast: standard deviation of luminance, divided by 0.25 and capped by tanh.
  sharpness      mean |Laplacian| of luminance (3x3 kernel), divided by 0.1 and capped by tanh: blur scores low.
  exposure       1 - 4 * (mean luminance - 0.5)^2: 1 at mid-grey mean, 0 for an all-black or all-white image.
The score is the weighted mean of the terms. Every term is differentiable in the pixels.

`ClipAestheticReward` is the LAION improved-aesthetic-predictor: an MLP on L2-normalised CLIP image
embeddings (768 -> 1024 -> 128 -> 64 -> 16 -> 1, `layers.*` state-dict keys), on a local CLIPModel
checkpoint and a local head file. Also differentiable.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from icg_rec.encoders.checkpoints import require_hf_folder
from icg_rec.errors import CheckpointError
from icg_rec.rewards.base import RewardInputs

_LUMA = (0.299, 0.587, 0.114)


@dataclass
class AestheticConfig:
    colourfulness: float = 1.0  # weight of the colourfulness term
    contrast: float = 1.0  # weight of the RMS-contrast term
    sharpness: float = 1.0  # weight of the Laplacian-sharpness term
    exposure: float = 1.0  # weight of the exposure term


def check_images(images: torch.Tensor) -> None:
    """Raises ValueError unless `images` is a float (B, 3, H, W) batch."""
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"images must be float (batch, 3, H, W) in [0, 1], got {images.dtype} {tuple(images.shape)}"
        )


class AestheticReward:
    """Offline, differentiable image-quality score in [0, 1] (see the module docstring for each term).

    Args:
        config: term weights; a weight of 0 drops the term.
    """

    name = "aesthetic"
    differentiable = True

    def __init__(self, config: AestheticConfig | None = None) -> None:
        self.config = config or AestheticConfig()

    def terms(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term of the score, (batch,) in about [0, 1].

        Args:
            images: (batch, 3, H, W) float in [0, 1].

        Returns:
            {"colourfulness", "contrast", "sharpness", "exposure"} -> (batch,).
        """
        check_images(images)
        r, g, b = images[:, 0], images[:, 1], images[:, 2]  # each (batch, H, W)
        rg, yb = r - g, 0.5 * (r + g) - b
        spread = (rg.flatten(1).var(1) + yb.flatten(1).var(1) + 1e-8).sqrt()  # (batch,)
        offset = (rg.flatten(1).mean(1) ** 2 + yb.flatten(1).mean(1) ** 2 + 1e-8).sqrt()  # (batch,)
        luma = sum(w * images[:, c] for c, w in enumerate(_LUMA))[:, None]  # (batch, 1, H, W)
        kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=images.dtype)
        laplacian = F.conv2d(luma, kernel.to(images.device)[None, None])  # (batch, 1, H-2, W-2)
        return {
            "colourfulness": torch.tanh((spread + 0.3 * offset) / 0.5),
            "contrast": torch.tanh(luma.flatten(1).std(1) / 0.25),
            "sharpness": torch.tanh(laplacian.abs().flatten(1).mean(1) / 0.1),
            "exposure": 1.0 - 4.0 * (luma.flatten(1).mean(1) - 0.5) ** 2,
        }

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        """Weighted mean of the terms, (batch,) in about [0, 1]."""
        weights = {k: getattr(self.config, k) for k in ("colourfulness", "contrast", "sharpness", "exposure")}
        total = sum(weights.values())
        if total <= 0:
            raise ValueError(f"aesthetic term weights must sum to > 0, got {weights}")
        terms = self.terms(inputs.images)
        return sum(w * terms[k] for k, w in weights.items()) / total


class LaionAestheticHead(nn.Module):
    """The LAION improved-aesthetic-predictor MLP; its state-dict keys are `layers.{0,2,4,6,7}.*`.

    Args:
        in_dim: CLIP image-embedding width (768 for ViT-L/14, the published head).
    """

    def __init__(self, in_dim: int = 768) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.layers = nn.Sequential(
            nn.Linear(in_dim, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )  # fmt: skip

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)[:, 0]  # (batch,)

    @classmethod
    def load(cls, path: str | Path, in_dim: int = 768) -> "LaionAestheticHead":
        """Loads a head from a `.safetensors` or a PyTorch `.pth` state dict (weights_only)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"no aesthetic head at {path}")
        if path.suffix == ".safetensors":
            from icg_rec.io import load_weights

            state = load_weights(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        head = cls(in_dim)
        try:
            head.load_state_dict(state)
        except RuntimeError as err:
            raise CheckpointError(
                f"{path} is not a LAION aesthetic head with input width {in_dim}: {err}"
            ) from err
        return head.eval()


class ClipAestheticReward:
    """LAION aesthetic score on a local CLIP checkpoint: head(normalise(CLIP image embedding)).

    Args:
        clip_path: folder of a transformers CLIPModel (save_pretrained layout); loaded offline.
        head_path: LAION head weights (.pth or .safetensors); its input width must be CLIP's projection_dim.
    """

    name = "aesthetic_clip"
    differentiable = True

    def __init__(self, clip_path: str | Path, head_path: str | Path) -> None:
        self.clip = load_clip(clip_path)
        self.head = LaionAestheticHead.load(head_path, in_dim=self.clip.config.projection_dim)

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        """(batch,) LAION aesthetic scores (about 1-10 with the published head)."""
        emb = clip_image_embeddings(self.clip, inputs.images)  # (batch, projection_dim)
        return self.head(F.normalize(emb, dim=-1))


def load_clip(path: str | Path):
    """A frozen transformers CLIPModel from a local folder, raising CheckpointError naming the folder."""
    from transformers import CLIPModel

    path = require_hf_folder(path)  # config.json and weights, before transformers builds anything
    try:
        model = CLIPModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} does not hold a CLIPModel: {err}") from err
    return model.eval().requires_grad_(False)


_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_image_embeddings(clip, images: torch.Tensor) -> torch.Tensor:
    """CLIP image embeddings (batch, projection_dim) of [0, 1] pixels, differentiable (resize + normalise)."""
    check_images(images)
    size = clip.config.vision_config.image_size
    x = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(_CLIP_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(_CLIP_STD, device=x.device)[:, None, None]
    out = clip.get_image_features(pixel_values=(x - mean) / std)
    return out if isinstance(out, torch.Tensor) else out.pooler_output  # (batch, projection_dim)
