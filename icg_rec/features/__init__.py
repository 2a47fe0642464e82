"""Ranking features: the cover-embedding store, the CoverFeatures TorchRec module, TorchRec batches from
polars frames or streamed parquet, out-of-fold features.

Importing the package is light: each name imports its submodule (and torch, torchrec, ...) on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.features.cover_features import (
        CoverFeatures,
        CoverFeaturesConfig,
        RewardTables,
        WithCovers,
        reward_tables,
    )
    from icg_rec.features.frames import (
        add_target_stats,
        add_taste_cosine,
        attach_item_vectors,
        pca_item_vectors,
    )
    from icg_rec.features.provider import EncodedFrame, FeatureProvider, JaggedIds
    from icg_rec.features.store import CoverEmbeddingStore, CoverLookup, StoreConfig
    from icg_rec.features.stream import ParquetBatches, parquet_chunks

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "store": ["CoverEmbeddingStore", "CoverLookup", "StoreConfig"],
        "cover_features": [
            "CoverFeatures",
            "CoverFeaturesConfig",
            "RewardTables",
            "WithCovers",
            "reward_tables",
        ],
        "provider": ["EncodedFrame", "FeatureProvider", "JaggedIds"],
        "stream": ["ParquetBatches", "parquet_chunks"],
        "frames": ["add_target_stats", "add_taste_cosine", "attach_item_vectors", "pca_item_vectors"],
    },
)
