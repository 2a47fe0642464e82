import polars as pl
import pytest
import torch

from icg_rec.ope.policies import CoverCandidates


def candidates_table(n_items: int, n_cohorts: int) -> pl.DataFrame:
    rows = []
    for item in range(n_items):
        rows += [(item, 0, "original", None), (item, 1, "generic", None)]
        rows += [(item, 2 + c, "cohort", c) for c in range(n_cohorts)]
    return pl.DataFrame(
        rows,
        schema={"item_id": pl.Int64, "cover_id": pl.Int64, "kind": pl.String, "cohort_id": pl.Int64},
        orient="row",
    )


@pytest.fixture
def small_candidates() -> CoverCandidates:
    """3 items x (original, generic, 2 cohort covers) with distinct solid-colour 8 px covers."""
    table = candidates_table(3, 2)
    images = torch.linspace(0, 1, table.height)[:, None, None, None].expand(-1, 3, 8, 8).clone()
    return CoverCandidates.from_table(table, images)
