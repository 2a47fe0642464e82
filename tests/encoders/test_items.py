"""embed_items: one text and one cover embedding per item row, nothing skipped silently."""

import numpy as np
import polars as pl
import pytest
from PIL import Image

from icg_rec.encoders import EmbeddingCache, embed_items
from icg_rec.encoders.items import item_texts
from icg_rec.errors import SchemaError


def _items(tmp_path, image_paths: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [30, 10, 20][: len(image_paths)],
            "title": ["Heat (1995)", "Up (2009)", "Jaws (1975)"][: len(image_paths)],
            "text": ["Action|Crime", "", "Horror"][: len(image_paths)],
            "image_path": image_paths,
        },
        schema={"item_id": pl.Int64, "title": pl.String, "text": pl.String, "image_path": pl.String},
    )


def _covers(tmp_path) -> list[str]:
    paths = []
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        Image.new("RGB", (10, 14), colour).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    return paths


def test_rows_follow_the_frame(counting_text_encoder, tiny_image_encoder, tmp_path):
    paths = _covers(tmp_path)
    items = _items(tmp_path, paths)
    text_emb, image_emb = embed_items(
        items, counting_text_encoder, tiny_image_encoder, EmbeddingCache(tmp_path / "c")
    )
    assert item_texts(items) == ["Heat (1995). Action|Crime", "Up (2009)", "Jaws (1975). Horror"]
    np.testing.assert_array_equal(text_emb, counting_text_encoder.encode(item_texts(items)))
    np.testing.assert_array_equal(image_emb, tiny_image_encoder.encode(paths))
    assert text_emb.shape == (3, 4) and image_emb.shape == (3, 5)


def test_items_without_a_cover_are_an_error(counting_text_encoder, tiny_image_encoder, tmp_path):
    paths = _covers(tmp_path)
    items = _items(tmp_path, [paths[0], None, None])
    with pytest.raises(
        SchemaError, match=r"image_path is null for 2 of 3 item\(s\) \(e.g. item_id \[10, 20\]\)"
    ):
        embed_items(items, counting_text_encoder, tiny_image_encoder, EmbeddingCache(tmp_path / "c"))


def test_a_missing_cover_file_is_named(counting_text_encoder, tiny_image_encoder, tmp_path):
    items = _items(tmp_path, [str(tmp_path / "gone.png")])
    with pytest.raises(SchemaError, match="gone.png cannot be read"):
        embed_items(items, counting_text_encoder, tiny_image_encoder, EmbeddingCache(tmp_path / "c"))
