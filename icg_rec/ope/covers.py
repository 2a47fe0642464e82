"""Candidate covers from what the library already writes: original covers + a cover refresh folder.

Cover ids follow one scheme, the one SimWorld exploration logs and `icg-rec ope` use: 0 = the item's
original cover, 1 = its generic generated cover (refresh cohort -1), 2 + c = the cover refreshed for
cohort c.
"""

from pathlib import Path

import numpy as np
import polars as pl
import torch

from icg_rec.cohorts.cache import CoverCache
from icg_rec.cohorts.refresh import GENERIC_COHORT
from icg_rec.errors import SchemaError, UnknownIdError
from icg_rec.ope.policies import FIRST_COHORT_COVER_ID, GENERIC_COVER_ID, CoverCandidates

ORIGINAL_COVER_ID = 0


def candidates_from_refresh(
    item_ids: np.ndarray, original_images: torch.Tensor, refresh_folder: str | Path
) -> CoverCandidates:
    """Each item's original cover, generic cover and per-cohort covers, with their pixels.

    Args:
        item_ids: (n_items,) ids of the original covers.
        original_images: (n_items, 3, S, S) the original covers, in [0, 1].
        refresh_folder: a cover refresh output folder (manifest.parquet + covers/), e.g. the quickstart's
            `refresh/`; its covers must be S x S like the originals.

    Returns:
        The candidates (cover ids: 0 original, 1 generic, 2 + cohort).
    """
    folder = Path(refresh_folder)
    path = folder / "manifest.parquet"
    if not path.is_file():
        raise SchemaError(f"{folder} holds no manifest.parquet: expected the output folder of a cover refresh")
    manifest = pl.read_parquet(path)
    if missing := {"item_id", "cohort_id", "key"} - set(manifest.columns):
        raise SchemaError(f"{path} is missing column(s) {sorted(missing)}; expected item_id, cohort_id, key")
    ids = np.asarray(item_ids, dtype=np.int64)
    if unknown := sorted(set(manifest["item_id"].to_list()) - set(ids.tolist())):
        raise UnknownIdError(f"{path} holds covers of {len(unknown)} item(s) without an original cover, e.g. {unknown[:5]}")
    cache = CoverCache(folder / "covers")
    generated = torch.stack([cache.get(key) for key in manifest["key"]])  # (n_generated, 3, H, W)
    if generated.shape[1:] != original_images.shape[1:]:
        raise SchemaError(
            f"refreshed covers are {tuple(generated.shape[1:])}, the originals {tuple(original_images.shape[1:])}"
        )
    cohort = manifest["cohort_id"].to_numpy()
    table = pl.DataFrame(
        {
            "item_id": np.concatenate([ids, manifest["item_id"].to_numpy()]),
            "cover_id": np.concatenate(
                [
                    np.full(len(ids), ORIGINAL_COVER_ID),
                    np.where(cohort == GENERIC_COHORT, GENERIC_COVER_ID, FIRST_COHORT_COVER_ID + cohort),
                ]
            ),
            "kind": ["original"] * len(ids) + ["generic" if c == GENERIC_COHORT else "cohort" for c in cohort.tolist()],
            "cohort_id": np.concatenate([np.full(len(ids), -1), cohort]),
        }
    )
    return CoverCandidates.from_table(table, torch.cat([original_images.float(), generated.float()]))
