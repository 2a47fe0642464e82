import numpy as np
import polars as pl
import pytest

from icg_rec.errors import SchemaError
from icg_rec.metrics import auc, logloss
from icg_rec.rewards.baselines import MatrixFactorizationBaseline, PopularityBaseline
from icg_rec.rewards.personalized.training import latest_per_user

LOG = pl.DataFrame(
    {"user_id": [0, 0, 1, 1, 2], "item_id": [10, 11, 10, 11, 10], "label": [1.0, 0.0, 1.0, 0.0, 0.0]}
)


def test_popularity_is_the_smoothed_click_rate():
    model = PopularityBaseline(smoothing=2.0).fit(LOG)
    p = model.predict(pl.DataFrame({"item_id": [10, 11, 99]}))
    rate = 2 / 5
    np.testing.assert_allclose(p, [(2 + 2 * rate) / (3 + 2), (0 + 2 * rate) / (2 + 2), rate])
    assert model.n_unknown_ == 1


def test_mf_learns_user_item_affinity(taste_log):
    frame, _ = taste_log
    p = (
        MatrixFactorizationBaseline(dim=4, epochs=60, batch_size=64, lr=3e-2)
        .fit(frame, seed=0)
        .predict(frame)
    )
    assert auc(frame["label"].to_numpy(), p) > 0.85


def test_mf_scores_unseen_ids_with_global_terms():
    model = MatrixFactorizationBaseline(dim=2, epochs=1).fit(LOG, seed=0)
    p = model.predict(pl.DataFrame({"user_id": [7, 8], "item_id": [98, 99]}))
    assert p[0] == p[1] and model.n_unknown_ == 4


def test_baselines_name_missing_columns():
    with pytest.raises(SchemaError, match="label"):
        PopularityBaseline().fit(LOG.drop("label"))
    with pytest.raises(SchemaError, match="user_id"):
        MatrixFactorizationBaseline().fit(LOG.drop("user_id"))


def test_mf_keeps_the_epoch_with_the_best_validation_loss(taste_log):
    frame, _ = taste_log
    model = MatrixFactorizationBaseline(dim=4, epochs=8, batch_size=32, lr=1e-1).fit(frame, seed=0)
    _, valid = latest_per_user(frame, 0.1)
    p = model.predict(valid)
    assert len(model.valid_losses_) == 8
    assert model.valid_losses_.index(min(model.valid_losses_)) < 7  # it overfits, so the best is not the last
    assert logloss(valid["label"].to_numpy(), p) == pytest.approx(min(model.valid_losses_), abs=1e-5)
