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
from icg_rec.cohorts.refresh import GENERIC_COHORT, read_manifest
from icg_rec.errors import SchemaError, UnknownIdError
from icg_rec.ope.policies import FIRST_COHORT_COVER_ID, GENERIC_COVER_ID, CoverCandidates

ORIGINAL_COVER_ID = 0


def candidates_table(item_ids: np.ndarray, manifest: pl.DataFrame) -> pl.DataFrame:
    """The candidates table of items with original covers and a refresh manifest: original rows first.

    Args:
        item_ids: (n_items,) items with an original cover.
        manifest: a refresh manifest (item_id, cohort_id[, key]); cohort -1 = generic.

    Returns:
        item_id, cover_id, kind, cohort_id (null unless a cohort cover): the items' originals, then the
        manifest's rows in its order.
    """
    if missing := {"item_id", "cohort_id"} - set(manifest.columns):
        raise SchemaError(
            f"refresh manifest is missing column(s) {sorted(missing)}; expected item_id, cohort_id"
        )
    ids = np.asarray(item_ids, dtype=np.int64)
    if unknown := sorted(set(manifest["item_id"].to_list()) - set(ids.tolist())):
        raise UnknownIdError(
            f"the manifest holds covers of {len(unknown)} item(s) without an original cover, e.g. {unknown[:5]}"
        )
    cohort = manifest["cohort_id"].to_numpy()
    return pl.DataFrame(
        {
            "item_id": np.concatenate([ids, manifest["item_id"].to_numpy()]),
            "cover_id": np.concatenate(
                [
                    np.full(len(ids), ORIGINAL_COVER_ID),
                    np.where(cohort == GENERIC_COHORT, GENERIC_COVER_ID, FIRST_COHORT_COVER_ID + cohort),
                ]
            ),
            "kind": ["original"] * len(ids)
            + ["generic" if c == GENERIC_COHORT else "cohort" for c in cohort.tolist()],
            "cohort_id": np.concatenate([np.full(len(ids), -1), cohort]),
        }
    ).with_columns(cohort_id=pl.when(pl.col("kind") == "cohort").then(pl.col("cohort_id")))


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
        raise SchemaError(
            f"{folder} holds no manifest.parquet: expected the output folder of a cover refresh"
        )
    manifest = read_manifest(path)  # checksum, columns, key form: refused if damaged
    table = candidates_table(item_ids, manifest)
    cache = CoverCache(folder / "covers")
    rows = manifest.select("key", "sha256").iter_rows()
    generated = torch.stack(
        [cache.get(key, sha256) for key, sha256 in rows]
    )  # (n_generated, 3, H, W), verified
    if generated.shape[1:] != original_images.shape[1:]:
        raise SchemaError(
            f"refreshed covers are {tuple(generated.shape[1:])}, the originals {tuple(original_images.shape[1:])}"
        )
    return CoverCandidates.from_table(table, torch.cat([original_images.float(), generated.float()]))
