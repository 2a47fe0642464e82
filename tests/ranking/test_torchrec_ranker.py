import inspect

import numpy as np
import polars as pl
import pytest

from icg_rec.errors import CheckpointError, SchemaError
from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore
from icg_rec.metrics import auc
from icg_rec.ranking.base import FeatureSpec, Ranker
from icg_rec.ranking.dlrm import TorchRecConfig
from icg_rec.ranking.torchrec_ranker import TorchRecRanker

SPEC = FeatureSpec(sparse=["user_id", "item_id"], dense=["x"], embeddings=["text"])
FAST = TorchRecConfig(epochs=3, batch_size=100, progress=False, dense_lr=1e-2, sparse_lr=0.1)


@pytest.fixture(scope="module")
def world() -> tuple[pl.DataFrame, CoverEmbeddingStore]:
    """Clicks follow user taste x item cover vector, so ids and covers both carry signal."""
    n, rng = 600, np.random.default_rng(0)
    users, items = rng.integers(0, 20, n), rng.integers(0, 30, n)
    covers = rng.normal(size=(30, 4)).astype(np.float32)
    taste = rng.normal(size=(20, 4))
    label = ((taste[users] * covers[items]).sum(axis=1) > 0).astype(float)
    frame = pl.DataFrame({"user_id": users, "item_id": items, "label": label, "x": rng.normal(size=n)})
    text = rng.normal(size=(n, 3)).astype(np.float32)
    frame = frame.with_columns(pl.Series("text", text, dtype=pl.Array(pl.Float32, 3)))
    store = CoverEmbeddingStore().build(np.arange(30), np.full(30, DEFAULT_COHORT), covers)
    return frame, store


@pytest.fixture(scope="module")
def fitted(world) -> TorchRecRanker:
    frame, _ = world
    return TorchRecRanker(FAST).fit(frame[:500], SPEC, valid=frame[500:], seed=0)


@pytest.fixture(scope="module")
def covered(world) -> TorchRecRanker:
    frame, store = world
    config = TorchRecConfig(**{**vars(FAST), "cover_features": True, "arch": "dlrm_dcn"})
    cohorts = pl.DataFrame({"user_id": [0, 1], "cohort_id": [3, 3]})
    return TorchRecRanker(config, cover_store=store, user_cohorts=cohorts).fit(frame, SPEC)


def test_fit_predict_follows_the_ranker_protocol_and_learns(world, fitted):
    frame, _ = world
    ranker: Ranker = TorchRecRanker(FAST)
    assert ranker.fit(frame[:500], SPEC, valid=frame[500:], seed=0) is ranker
    scores = ranker.predict(frame[500:])
    assert scores.dtype == np.float64 and scores.shape == (100,)
    np.testing.assert_array_equal(scores, fitted.predict(frame[500:]))  # same seed, same numbers
    assert auc(frame["label"][:500].to_numpy(), ranker.predict(frame[:500])) > 0.75
    assert [h["epoch"] for h in ranker.history_] == list(range(len(ranker.history_)))
    assert ranker.history_[ranker.best_epoch_]["valid_auc"] == max(h["valid_auc"] for h in ranker.history_)


def test_same_signature_as_lightgbm_ranker():
    from icg_rec.ranking.lightgbm_ranker import LightGBMRanker

    for method in ("fit", "predict"):
        assert (
            inspect.signature(getattr(TorchRecRanker, method)).parameters.keys()
            == inspect.signature(getattr(LightGBMRanker, method)).parameters.keys()
        )


def test_cover_features_widen_the_dense_input(fitted, covered):
    assert covered.provider_.dense_width == fitted.provider_.dense_width + 5  # cover (4) + has_cover (1)
    counts = covered.fit_counts_
    # users 0 and 1 (68 rows) are in cohort 3, which has no covers: they fall back to the default cover
    assert (counts["cover_exact"], counts["cover_fallback"], counts["cover_missing"]) == (532, 68, 0)
    assert counts["default_cohort"] == 532


def test_unknown_ids_at_predict_use_row_zero(world, fitted):
    frame, _ = world
    cold = frame[:4].with_columns(pl.lit(10_000, dtype=pl.Int64).alias("item_id"))
    assert fitted.provider_.encode(cold).n_unknown == {"user_id": 0, "item_id": 4}
    assert np.isfinite(fitted.predict(cold)).all()


def test_save_load_round_trip(world, covered, tmp_path):
    frame, _ = world
    loaded = TorchRecRanker.load(covered.save(tmp_path / "ckpt"))
    np.testing.assert_array_equal(loaded.predict(frame), covered.predict(frame))
    assert loaded.history_ == covered.history_ and loaded.config == covered.config


def test_bad_inputs_are_refused(world, fitted, covered, tmp_path):
    frame, store = world
    with pytest.raises(ValueError, match="no cover_store"):
        TorchRecRanker(TorchRecConfig(cover_features=True)).fit(frame, SPEC)
    with pytest.raises(ValueError, match="cover_features is off"):
        TorchRecRanker(FAST, cover_store=store).fit(frame, SPEC)
    with pytest.raises(SchemaError, match="both 0 and 1"):
        TorchRecRanker(FAST).fit(frame, SPEC, valid=frame.filter(pl.col("label") == 1))
    with pytest.raises(ValueError, match="arch must be one of"):
        TorchRecRanker(TorchRecConfig(arch="wide_deep")).fit(frame, SPEC)
    with pytest.raises(ValueError, match="not fitted"):
        TorchRecRanker().predict(frame)
    folder = fitted.save(tmp_path / "a")
    covered.save(tmp_path / "b")
    (folder / "model.safetensors").write_bytes((tmp_path / "b" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match"):
        TorchRecRanker.load(folder)


def test_a_list_column_is_a_mean_pooled_table_and_survives_save_load(world, tmp_path):
    frame, _ = world
    rng = np.random.default_rng(1)
    history = [rng.integers(0, 30, rng.integers(0, 5)).tolist() for _ in range(frame.height)]
    frame = frame.with_columns(history=pl.Series(history, dtype=pl.List(pl.Int64)))
    spec = FeatureSpec(sparse=["user_id", "item_id", "history"], dense=["x"])
    ranker = TorchRecRanker(FAST).fit(frame[:500], spec, seed=0)
    tables = {
        c.name: c.pooling.name
        for c in ranker.model_.sparse_arch.embedding_bag_collection.embedding_bag_configs()
    }
    assert tables == {"t_user_id": "SUM", "t_item_id": "SUM", "t_history": "MEAN"}
    loaded = TorchRecRanker.load(ranker.save(tmp_path / "ranker"))
    np.testing.assert_array_equal(loaded.predict(frame[500:]), ranker.predict(frame[500:]))
