"""The encoder interface: texts or images in, float32 embeddings out; images also differentiably."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from icg_rec.data.images import load_image

ImageInput = Image.Image | str | Path
# Rounding slack on the [0, 1] pixel range: an upstream resize of [0, 1] pixels can land at 1 + 1e-7;
# anything further out (0-255 pixels, [-1, 1] pixels) is refused.
PIXEL_SLACK = 1e-3


class TextEncoder(ABC):
    """Maps texts to fixed-size float32 embeddings.

    Attributes:
        name: identifies the weights and preprocessing; cache keys include it, so it changes when
            the output would.
        dim: embedding width.
    """

    name: str
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeds texts.

        Args:
            texts: the texts; an empty sequence gives an empty (0, dim) array.
            batch_size: texts per forward pass.
            progress: show a tqdm bar over batches.

        Returns:
            float32 array (len(texts), dim), row i for texts[i].
        """


def check_texts(texts: Sequence[str]) -> list[str]:
    """Returns `texts` as a list, refusing a bare string or any non-string element by position."""
    if isinstance(texts, str | bytes):
        raise ValueError(f"texts must be a sequence of strings, got a single {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a str, got {type(text).__name__}: {text!r:.80}")
    return texts


def check_images(images: Sequence[ImageInput]) -> list[ImageInput]:
    """Returns `images` as a list, refusing a bare image/path or an element of another type by position."""
    if isinstance(images, str | Path | Image.Image):
        raise ValueError(f"images must be a sequence, got a single {type(images).__name__}")
    images = list(images)
    for i, image in enumerate(images):
        if not isinstance(image, str | Path | Image.Image):
            raise ValueError(f"images[{i}] must be a PIL image, str or Path, got {type(image).__name__}")
    return images


def batches(n: int, batch_size: int, progress: bool, desc: str) -> list[range] | tqdm:
    """Index ranges of consecutive batches, wrapped in a tqdm bar when `progress`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    spans = [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    return tqdm(spans, desc=desc, unit="batch") if progress else spans


def pil_to_pixels(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float tensor (1, 3, H, W) in [0, 1]."""
    array = np.array(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3), a writable copy
    return torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255.0


def resize_pixels(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Resizes (B, 3, H, W) to (B, 3, size, size), bilinear with antialiasing, differentiably.

    The whole image is squashed to a square rather than centre-cropped: a poster's title and
    faces sit near its edges, and a crop would drop them.
    """
    if pixels.shape[-2:] == (size, size):
        return pixels
    return F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def read_pixels(image: "ImageInput", size: int) -> torch.Tensor:
    """An image file or PIL image as (1, 3, size, size) pixels in [0, 1], resized by `resize_pixels`.

    The one way icg_rec turns a cover file into pixels: encoders (`ImageEncoder.encode`), reward
    models and `icg-rec rewards score` all read covers through it, so training and serving agree.
    """
    image = image if isinstance(image, Image.Image) else load_image(image)
    return resize_pixels(pil_to_pixels(image), size).clamp_(0.0, 1.0)


class ImageEncoder(nn.Module, ABC):
    """Maps images to fixed-size embeddings; `forward` is differentiable in the pixels.

    Subclasses set `name`, `dim`, `image_size`, register buffers `mean` and `std` (3, 1, 1) and
    implement `embed` on normalised pixels. Parameters are frozen by default; a frozen encoder stays in
    eval mode even when a parent module calls `.train()` (its batch-norm statistics never move).

    Attributes:
        name: identifies the weights and preprocessing (part of every cache key).
        dim: embedding width.
        image_size: side of the square input the backbone sees.
    """

    name: str
    dim: int
    image_size: int
    mean: torch.Tensor
    std: torch.Tensor

    @abstractmethod
    def embed(self, normalised: torch.Tensor) -> torch.Tensor:
        """Backbone on normalised pixels (B, 3, image_size, image_size) -> (B, dim)."""

    def freeze(self) -> "ImageEncoder":
        """Stops gradients into the parameters and switches to eval mode; returns self."""
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "ImageEncoder":
        """Like nn.Module.train, except that a fully frozen encoder always stays in eval mode."""
        trainable = any(p.requires_grad for p in self.parameters())
        return super().train(mode and trainable)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embeds a batch of images, differentiably in `pixels`.

        Args:
            pixels: float tensor (B, 3, H, W) in [0, 1], any H and W; resized and normalised here.

        Returns:
            Embeddings (B, dim) on the encoder's device.
        """
        check_pixels(pixels)
        x = resize_pixels(pixels, self.image_size)  # (B, 3, S, S)
        x = (x - self.mean) / self.std  # (B, 3, S, S) in the backbone's input range
        return self.embed(x)  # (B, dim)

    @torch.inference_mode()
    def encode(
        self, images: Sequence[ImageInput], batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Embeds images given as PIL images or file paths (read with `icg_rec.data.images.load_image`).

        Args:
            images: the images; an empty sequence gives an empty (0, dim) array.
            batch_size: images per forward pass.
            progress: show a tqdm bar over batches.

        Returns:
            float32 array (len(images), dim), row i for images[i].
        """
        images = check_images(images)
        device = self.mean.device
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for span in batches(len(images), batch_size, progress, desc=f"encode images ({self.name})"):
            pixels = torch.cat([read_pixels(images[i], self.image_size) for i in span]).to(
                device
            )  # (b, 3, S, S)
            out[span.start : span.stop] = self(pixels).float().cpu().numpy()
        return out


def check_pixels(pixels: torch.Tensor) -> None:
    """Refuses anything but a float tensor (B, 3, H, W) with values in [0, 1] (+- PIXEL_SLACK)."""
    if not isinstance(pixels, torch.Tensor):
        raise ValueError(f"pixels must be a torch.Tensor (B, 3, H, W), got {type(pixels).__name__}")
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must have shape (B, 3, H, W), got {tuple(pixels.shape)}")
    if not pixels.is_floating_point():
        raise ValueError(f"pixels must be a float tensor in [0, 1], got dtype {pixels.dtype}")
    if pixels.numel() == 0:
        raise ValueError(f"pixels is empty: shape {tuple(pixels.shape)}")
    lo, hi = pixels.detach().aminmax()
    if not (lo >= -PIXEL_SLACK and hi <= 1.0 + PIXEL_SLACK):  # also refuses NaN
        raise ValueError(f"pixels must lie in [0, 1], got min {lo.item():.4g}, max {hi.item():.4g}")
