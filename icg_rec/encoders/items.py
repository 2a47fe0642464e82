"""Text and cover embeddings for an items frame, through the embedding cache."""

import numpy as np
import polars as pl

from icg_rec.data.schema import validate_items
from icg_rec.encoders.base import ImageEncoder, TextEncoder
from icg_rec.encoders.cache import EmbeddingCache, encode_cached
from icg_rec.errors import SchemaError


def item_texts(items: pl.DataFrame) -> list[str]:
    """What the text encoder sees per item: "<title>. <text>" ("<title>" where text is empty)."""
    return [
        f"{title}. {text}" if text else title
        for title, text in zip(items["title"], items["text"], strict=True)
    ]


def embed_items(
    items: pl.DataFrame,
    text_encoder: TextEncoder,
    image_encoder: ImageEncoder,
    cache: EmbeddingCache,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeds every item's text and cover image; row i of both arrays is `items["item_id"][i]`.

    Nothing is skipped: an item without a cover is an error, not a silently missing row. Keep only
    items with covers first (`items.filter(pl.col("image_path").is_not_null())`) if that is intended.

    Args:
        items: an ITEMS_SCHEMA frame, every image_path set.
        text_encoder: embeds `item_texts(items)`.
        image_encoder: embeds the files at image_path.
        cache: reused across runs; only new or changed texts/files are encoded.
        progress: show tqdm bars while encoding.

    Returns:
        (text embeddings (n, text_encoder.dim), image embeddings (n, image_encoder.dim)), float32.

    Raises:
        SchemaError: the frame breaks ITEMS_SCHEMA, some image_path is null (count and sample ids in
            the message), or an image file is missing or unreadable (named).
    """
    validate_items(items)
    no_cover = items.filter(pl.col("image_path").is_null())
    if no_cover.height:
        raise SchemaError(
            f"items.image_path is null for {no_cover.height} of {items.height} item(s) "
            f"(e.g. item_id {no_cover['item_id'].head(5).to_list()}); embed_items needs a cover for "
            "every item: filter them out first or give them covers"
        )
    text_emb = encode_cached(text_encoder, item_texts(items), cache, progress=progress)
    image_emb = encode_cached(image_encoder, items["image_path"].to_list(), cache, progress=progress)
    return text_emb, image_emb
