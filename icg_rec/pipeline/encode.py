"""Stage `encode`: text and image embeddings of every item (through the content-keyed cache), and the
reference covers as pixels at the run's cover size."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from icg_rec.io import load_weights, save_weights, write_json
from icg_rec.pipeline.prepare import Prepared
from icg_rec.pipeline.stage import StageOutput

COLOUR_GRID, EFFICIENTNET, MINILM = "colour-grid", "efficientnet-lite0", "minilm"


@dataclass
class EncodeConfig:
    image_size: int = 16  # side of the covers' pixel copy: the generator's resolution, the cnn reward's input
    image_encoder: str = COLOUR_GRID  # "colour-grid", "efficientnet-lite0" or a local HF CLIP/SigLIP folder
    text_encoder: str = MINILM  # "minilm" or a local sentence-transformers / HF encoder folder
    cache_dir: str = "~/.cache/icg_rec"  # embedding cache, keyed by content, shared across runs


def image_encoder(name: str, image_size: int):
    """The frozen ImageEncoder a config names (`colour-grid` reads covers of `image_size` pixels)."""
    from icg_rec.encoders import EfficientNetLite0Encoder, load_image_encoder
    from icg_rec.encoders.small import ColourGridEncoder

    if name == COLOUR_GRID:
        return ColourGridEncoder(image_size=image_size).freeze()
    if name == EFFICIENTNET:
        return EfficientNetLite0Encoder().freeze()
    return load_image_encoder(name).freeze()


def text_encoder(name: str):
    """The TextEncoder a config names, memoising each distinct text (titles repeat every training step)."""
    from icg_rec.encoders import load_text_encoder
    from icg_rec.encoders.small import MemoTextEncoder

    return MemoTextEncoder(load_text_encoder(None if name == MINILM else name))


@dataclass(frozen=True)
class Encoded(StageOutput):
    """embeddings.safetensors (item_ids, text, image, pixels) and encoders.json."""

    def tensors(self) -> dict[str, torch.Tensor]:
        """item_ids (n,), titles and text (n, t), image (n, d), pixels (n, 3, S, S) in [0, 1]; row i = item i.

        `titles` embeds the title alone (what the generator and the relevance reward read), `text`
        embeds "title. text" (what ranking features read).
        """
        return load_weights(self.path("embeddings.safetensors"))

    def encoders(self) -> dict:
        """The encoder names and the cover size."""
        return self.read_json("encoders.json")

    def image_encoder(self):
        """The image encoder the embeddings were made with (differentiable in pixels)."""
        meta = self.encoders()
        return image_encoder(meta["image_encoder"], meta["image_size"])

    def text_encoder(self):
        """The text encoder the embeddings were made with."""
        return text_encoder(self.encoders()["text_encoder"])


def encode(config: EncodeConfig, prepared: Prepared, folder: Path) -> Encoded:
    """Embeds every item's text ("title. text") and reference cover, and keeps the covers as pixels.

    Args:
        config: encoders and cover size.
        prepared: the items.
        folder: the stage folder.

    Returns:
        The embeddings.
    """
    from icg_rec.encoders import EmbeddingCache, encode_cached
    from icg_rec.encoders.items import item_texts
    from icg_rec.generation.warmup import reference_tensor

    items = prepared.items()
    cache = EmbeddingCache(Path(config.cache_dir).expanduser())
    paths = items["image_path"].to_list()
    images = image_encoder(config.image_encoder, config.image_size)
    texts = text_encoder(config.text_encoder)
    save_weights(
        folder / "embeddings.safetensors",
        {
            "item_ids": items["item_id"].to_torch(),
            "titles": torch.from_numpy(encode_cached(texts, items["title"].to_list(), cache)),
            "text": torch.from_numpy(encode_cached(texts, item_texts(items), cache)),
            "image": torch.from_numpy(np.asarray(encode_cached(images, paths, cache))),
            "pixels": reference_tensor(paths, config.image_size),  # (n, 3, S, S)
        },
    )
    write_json(
        folder / "encoders.json",
        {
            "image_encoder": config.image_encoder,
            "text_encoder": config.text_encoder,
            "image_size": config.image_size,
        },
    )
    return Encoded(folder)
