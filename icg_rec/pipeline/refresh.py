"""Stage `refresh`: a generic cover and one per cohort for every item (resumable, content-addressed)."""

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from icg_rec.io import write_json
from icg_rec.pipeline.align import Aligned
from icg_rec.pipeline.cohorts import Cohorts
from icg_rec.pipeline.encode import Encoded
from icg_rec.pipeline.prepare import Prepared
from icg_rec.pipeline.stage import StageOutput

logger = logging.getLogger(__name__)

PROBE_ITEMS = 2  # items refreshed first on a CPU, to time the rest


@dataclass
class RefreshConfig:
    num_inference_steps: int = 6  # DDIM steps per cover
    guidance_scale: float = 1.0  # classifier-free guidance (1 = off)
    batch_size: int = 64  # covers per generator call
    sheet_items: int = 16  # items on each cohort's contact sheet
    seed: int = 0  # base seed of every cover (set from the run's seed)


@dataclass(frozen=True)
class Refreshed(StageOutput):
    """covers/ (one PNG per key), manifest.parquet, contact_sheets/, summary.json."""

    def manifest(self) -> pl.DataFrame:
        """One row per (item, cohort): item_id, cohort_id (-1 = generic), key, path, status, ..."""
        from icg_rec.cohorts.refresh import read_manifest

        return read_manifest(self.path("manifest.parquet"))

    def covers(self, generic: bool = False):
        """The refreshed covers as CohortCovers (sorted by item, cohort), every file checked.

        Args:
            generic: also each item's generic cover (cohort -1): a log whose cover_id says a generic
                cover was shown needs it.
        """
        import torch

        from icg_rec.cohorts.cache import CoverCache
        from icg_rec.ranking.cover_arms import CohortCovers

        rows = self.manifest().sort("item_id", "cohort_id")
        if not generic:
            rows = rows.filter(pl.col("cohort_id") >= 0)
        cache = CoverCache(self.path("covers"))
        images = torch.stack([cache.get(key) for key in rows["key"]])  # (n, 3, S, S)
        return CohortCovers(rows["item_id"].to_numpy(), rows["cohort_id"].to_numpy(), images)

    def summary(self) -> dict:
        """items, cohorts, generated, cached (and the seconds of the generation loop)."""
        return self.read_json("summary.json")

    def contact_sheets(self) -> list[Path]:
        """One PNG per cohort (and the generic covers as cohort -1)."""
        self.path("contact_sheets")
        return sorted((Path(self.folder) / "contact_sheets").glob("*.png"))


def refresh(
    config: RefreshConfig,
    prepared: Prepared,
    encoded: Encoded,
    aligned: Aligned,
    cohorts: Cohorts,
    folder: Path,
    device: str = "cpu",
    dtype: str = "float32",
) -> Refreshed:
    """Generates the covers of every (item, cohort) the cache lacks, plus each item's generic cover.

    Args:
        config: sampling settings.
        prepared: the items (their content keys the covers).
        encoded: reference covers and perception encoders.
        aligned: the aligned generator.
        cohorts: the cohorts (their centroids are the user embeddings covers are made for).
        folder: the stage folder (covers already there are reused).
        device: where the covers are generated.
        dtype: the UNet's and decoder's dtype while sampling ("float32", "bfloat16", "float16": CUDA only).

    Returns:
        The refreshed covers.
    """
    from icg_rec.cohorts.cache import CoverCache
    from icg_rec.cohorts.generator import PipelineCoverGenerator
    from icg_rec.cohorts.refresh import GENERIC_COHORT, contact_sheets, refresh_covers

    items = prepared.items()
    fitted = cohorts.cohorts()
    references = list(encoded.tensors()["pixels"])
    generator = PipelineCoverGenerator(
        aligned.pipeline(encoded),
        items["item_id"],
        items["title"],
        references,
        config.num_inference_steps,
        config.guidance_scale,
        device=device,
        dtype=dtype,
    )
    generated = 0
    if device == "cpu" and not (folder / "covers").is_dir() and items.height > PROBE_ITEMS:
        start = time.perf_counter()
        _, probe = refresh_covers(
            items.head(PROBE_ITEMS), fitted, generator, folder, config.seed, config.batch_size
        )
        per_cover = (time.perf_counter() - start) / max(probe.work, 1)
        total = items.height * (len(fitted.versions_) + 1)
        minutes = per_cover * (total - probe.work) / 60
        logger.info("[refresh] estimated at most %.1f min for %d covers on CPU", minutes, total)
        generated = probe.generated
    manifest, stats = refresh_covers(items, fitted, generator, folder, config.seed, config.batch_size)
    cache = CoverCache(folder / "covers")
    contact_sheets(manifest, cache, folder / "contact_sheets", config.sheet_items)
    generated += stats.generated
    summary = {
        "items": items.height,
        "cohorts": len(fitted.versions_),
        "generated": generated,
        "cached": stats.work - generated,
        "generic_covers": int((manifest["cohort_id"] == GENERIC_COHORT).sum()),
        "seconds": stats.seconds,
        "config": asdict(config),
    }
    write_json(folder / "summary.json", summary)
    return Refreshed(folder)
