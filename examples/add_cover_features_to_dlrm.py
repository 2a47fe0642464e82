"""Add cover embeddings to a TorchRec DLRM and compare AUC with and without them.

    python examples/add_cover_features_to_dlrm.py

A small SimWorld (synthetic users whose clicks depend on what covers look like) stands in for your
logs. Swap in your own frames: interactions (user_id, item_id, label, ...) and one vector per cover.
"""

import numpy as np
import polars as pl
import torch

from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.data.splits import per_user_temporal_split
from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore
from icg_rec.metrics import auc, gauc
from icg_rec.ranking.base import FeatureSpec
from icg_rec.ranking.dlrm import TorchRecConfig
from icg_rec.ranking.torchrec_ranker import TorchRecRanker

world = SimWorld.generate(SimConfig(n_users=600, n_items=200, impressions_per_user=30, seed=0))
train, test = per_user_temporal_split(world.dataset.interactions, test_fraction=0.2)

# 1. A cover vector per (item, cohort). Here: the item's one reference cover under DEFAULT_COHORT,
#    described by cheap visual attributes; in production, an image encoder's embedding per cover.
with torch.no_grad():
    vectors = world.oracle.visual_attributes(world.covers).numpy()  # (n_items, n_attributes)
store = CoverEmbeddingStore().build(
    item_ids=np.arange(len(vectors)), cohort_ids=np.full(len(vectors), DEFAULT_COHORT), vectors=vectors
)

# 2. Which cohort's cover each user sees. No per-cohort covers exist yet, so every lookup falls back
#    to the item's default cover, and the ranker counts that (fit_counts_["cover_fallback"]).
user_cohorts = pl.DataFrame(
    {"user_id": np.arange(len(world.user_cohort)), "cohort_id": world.user_cohort.numpy()}
)

# 3. The same DLRM, ids only, with cover features switched off and on.
spec = FeatureSpec(sparse=["user_id", "item_id"])
valid = train.filter(pl.col("timestamp") >= train["timestamp"].quantile(0.9))
fit_rows = train.filter(pl.col("timestamp") < train["timestamp"].quantile(0.9))
for cover_features in (False, True):
    config = TorchRecConfig(cover_features=cover_features, epochs=8, batch_size=256, progress=False)
    ranker = TorchRecRanker(
        config, store if cover_features else None, user_cohorts if cover_features else None
    )
    ranker.fit(fit_rows, spec, valid=valid, seed=0)
    scores = ranker.predict(test)
    labels = test["label"].to_numpy()
    print(
        f"cover_features={cover_features}: test AUC {auc(labels, scores):.4f}, "
        f"gAUC {gauc(labels, scores, test['user_id'].to_numpy()).value:.4f}, "
        f"best epoch {ranker.best_epoch_}, counts {ranker.fit_counts_}"
    )

ranker.save("out/dlrm_with_covers")  # model.safetensors + ranker.json + provider/ (vocabularies, store)
print("saved out/dlrm_with_covers; reload with TorchRecRanker.load('out/dlrm_with_covers')")
