"""Pick an encoder by path: None gives the embedded offline default, a folder a Hugging Face model."""

from pathlib import Path

from icg_rec.encoders.base import ImageEncoder, TextEncoder
from icg_rec.encoders.efficientnet import EfficientNetLite0Encoder
from icg_rec.encoders.hf_image import HFImageEncoder
from icg_rec.encoders.text import HFTextEncoder, MiniLMTextEncoder


def load_text_encoder(path: str | Path | None = None) -> TextEncoder:
    """A text encoder.

    Args:
        path: None for all-MiniLM-L6-v2 (384-d, shipped in a Python package), else a local Hugging
            Face encoder folder (mean pooling + L2 norm).

    Returns:
        The encoder, ready to `encode`.
    """
    return MiniLMTextEncoder() if path is None else HFTextEncoder(path)


def load_image_encoder(path: str | Path | None = None) -> ImageEncoder:
    """An image encoder (frozen, eval mode, on CPU; move it with `.to(device)`).

    Args:
        path: None for EfficientNet-Lite0 ImageNet features (1280-d, shipped in a Python package),
            else a local CLIP / SigLIP checkpoint folder.

    Returns:
        The encoder, ready to `encode` or to call on pixel tensors.
    """
    return EfficientNetLite0Encoder() if path is None else HFImageEncoder(path)
