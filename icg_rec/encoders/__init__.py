"""Text and image encoders behind one small interface, with an on-disk embedding cache.

Importing this package loads no model; the default weights are read once per process on first use.
"""

from icg_rec.encoders.base import ImageEncoder, TextEncoder
from icg_rec.encoders.cache import EmbeddingCache, encode_cached
from icg_rec.encoders.efficientnet import EfficientNetLite0Encoder
from icg_rec.encoders.hf_image import HFImageEncoder
from icg_rec.encoders.items import embed_items
from icg_rec.encoders.load import load_image_encoder, load_text_encoder
from icg_rec.encoders.text import HFTextEncoder, MiniLMTextEncoder

__all__ = [
    "EfficientNetLite0Encoder",
    "EmbeddingCache",
    "HFImageEncoder",
    "HFTextEncoder",
    "ImageEncoder",
    "MiniLMTextEncoder",
    "TextEncoder",
    "embed_items",
    "encode_cached",
    "load_image_encoder",
    "load_text_encoder",
]
