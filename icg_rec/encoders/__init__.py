"""Text and image encoders behind one small interface, with an on-disk embedding cache.

Importing the package loads no model and not even torch: each name imports its submodule on first use, and
the default weights are read once per process when first asked for.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.encoders.base import ImageEncoder, TextEncoder
    from icg_rec.encoders.cache import EmbeddingCache, encode_cached
    from icg_rec.encoders.efficientnet import EfficientNetLite0Encoder
    from icg_rec.encoders.hf_image import HFImageEncoder
    from icg_rec.encoders.items import embed_items
    from icg_rec.encoders.load import (
        describe_image_encoder,
        describe_text_encoder,
        load_image_encoder,
        load_text_encoder,
    )
    from icg_rec.encoders.text import HFTextEncoder, MiniLMTextEncoder

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "base": ["ImageEncoder", "TextEncoder"],
        "cache": ["EmbeddingCache", "encode_cached"],
        "efficientnet": ["EfficientNetLite0Encoder"],
        "hf_image": ["HFImageEncoder"],
        "items": ["embed_items"],
        "load": [
            "describe_image_encoder",
            "describe_text_encoder",
            "load_image_encoder",
            "load_text_encoder",
        ],
        "text": ["HFTextEncoder", "MiniLMTextEncoder"],
    },
)
