"""Ranking features: the cover-embedding store, TorchRec batches from polars frames, out-of-fold features.

Importing the package is light: each name imports its submodule (and torch, torchrec, ...) on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.features.frames import (
        add_target_stats,
        add_taste_cosine,
        attach_item_vectors,
        pca_item_vectors,
    )
    from icg_rec.features.provider import EncodedFrame, FeatureProvider
    from icg_rec.features.store import CoverEmbeddingStore, CoverLookup, StoreConfig

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "store": ["CoverEmbeddingStore", "CoverLookup", "StoreConfig"],
        "provider": ["EncodedFrame", "FeatureProvider"],
        "frames": ["add_target_stats", "add_taste_cosine", "attach_item_vectors", "pca_item_vectors"],
    },
)
