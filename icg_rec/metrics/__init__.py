"""icg_rec.metrics: exact, vectorized click-prediction, top-k and calibration metrics.

Statistics (user-level bootstrap, DeLong) live in `icg_rec.metrics.stats`.
"""

from icg_rec.metrics.calibration import calibration_table, ece
from icg_rec.metrics.classification import GAUC, auc, format_relaimpr, gauc, logloss, relaimpr, uauc
from icg_rec.metrics.topk import hit_rate_at_k, ndcg_at_k, recall_at_k

__all__ = [
    "GAUC",
    "auc",
    "calibration_table",
    "ece",
    "format_relaimpr",
    "gauc",
    "hit_rate_at_k",
    "logloss",
    "ndcg_at_k",
    "recall_at_k",
    "relaimpr",
    "uauc",
]
