"""User cohorts with stable ids, and the per-cohort cover refresh (incremental, resumable, sharded).

Importing the package is light: each name imports its submodule (and torch, torchrec, ...) on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.cohorts.cache import CoverCache
    from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
    from icg_rec.cohorts.generator import PipelineCoverGenerator
    from icg_rec.cohorts.refresh import CoverGenerator, RefreshStats, refresh_covers, run_refresh

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "clustering": ["CohortConfig", "UserCohorts"],
        "cache": ["CoverCache"],
        "generator": ["PipelineCoverGenerator"],
        "refresh": ["CoverGenerator", "RefreshStats", "refresh_covers", "run_refresh"],
    },
)
