"""Data: the dataset contract (your own tables in), the schemas and their validators, MovieLens loaders and posters, splits, negatives.

SimWorld lives in `icg_rec.data.sim`.

Importing the package is light: each name imports its submodule (and torch, torchrec, ...) on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.data.contract import ColumnMapping, read_interactions, read_items
    from icg_rec.data.images import load_image
    from icg_rec.data.movielens import attach_posters, load_movielens, load_movielens_with_posters
    from icg_rec.data.schema import (
        INTERACTIONS_SCHEMA,
        ITEMS_SCHEMA,
        USERS_SCHEMA,
        Dataset,
        validate_dataset,
        validate_interactions,
        validate_items,
        validate_users,
    )
    from icg_rec.data.splits import (
        cold_item_split,
        leave_last_n,
        per_user_temporal_split,
        sample_negatives,
        temporal_split,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "contract": ["ColumnMapping", "read_interactions", "read_items"],
        "schema": [
            "Dataset",
            "INTERACTIONS_SCHEMA",
            "ITEMS_SCHEMA",
            "USERS_SCHEMA",
            "validate_dataset",
            "validate_interactions",
            "validate_items",
            "validate_users",
        ],
        "movielens": ["attach_posters", "load_movielens", "load_movielens_with_posters"],
        "splits": [
            "cold_item_split",
            "leave_last_n",
            "per_user_temporal_split",
            "sample_negatives",
            "temporal_split",
        ],
        "images": ["load_image"],
    },
)
