"""Rankers behind one `Ranker` protocol (TorchRec DLRM / DCN, LightGBM) and the offline lift harness.

Importing the package is light: each name imports its submodule (and torch, torchrec, ...) on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.ranking.base import FeatureSpec, Ranker
    from icg_rec.ranking.cover_arms import CoverArmsConfig, run_cover_arms
    from icg_rec.ranking.dlrm import TorchRecConfig
    from icg_rec.ranking.lift import LiftConfig, LiftResult, run_lift, write_lift_report
    from icg_rec.ranking.lightgbm_ranker import LightGBMConfig, LightGBMRanker
    from icg_rec.ranking.torchrec_ranker import TorchRecRanker

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "base": ["FeatureSpec", "Ranker"],
        "dlrm": ["TorchRecConfig"],
        "torchrec_ranker": ["TorchRecRanker"],
        "lightgbm_ranker": ["LightGBMConfig", "LightGBMRanker"],
        "lift": ["LiftConfig", "LiftResult", "run_lift", "write_lift_report"],
        "cover_arms": ["CoverArmsConfig", "run_cover_arms"],
    },
)
