import numpy as np
import polars as pl
import pytest
import torch

from icg_rec.errors import SchemaError
from icg_rec.features.provider import FeatureProvider
from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore


def _frame(users, items, labels=None, x=None) -> pl.DataFrame:
    n = len(users)
    frame = pl.DataFrame(
        {"user_id": users, "item_id": items, "x": x if x is not None else np.arange(n, dtype=float)}
    )
    if labels is not None:
        frame = frame.with_columns(label=pl.Series(labels, dtype=pl.Float64))
    emb = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    return frame.with_columns(pl.Series("text", emb, dtype=pl.Array(pl.Float32, 2)))


def _store() -> CoverEmbeddingStore:
    # item 10: default cover + cohort 1 cover; item 20: default only; item 30: none
    vectors = np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3]], dtype=np.float32)
    return CoverEmbeddingStore().build(
        np.array([10, 10, 20]), np.array([DEFAULT_COHORT, 1, DEFAULT_COHORT]), vectors
    )


def _provider(**kwargs) -> FeatureProvider:
    train = _frame([5, 6, 5, 7], [10, 20, 20, 30], labels=[1, 0, 0, 1], x=[0.0, 2.0, 2.0, 4.0])
    return FeatureProvider(["user_id", "item_id"], ["x"], ["text"], **kwargs).fit(train)


def test_kjt_maps_known_ids_to_rows_and_unknown_ids_to_row_zero():
    provider = _provider()
    encoded = provider.encode(_frame([7, 99, 5], [30, 10, 77], labels=[1, 0, 1]))
    assert provider.table_sizes() == {"user_id": 4, "item_id": 4}
    assert encoded.n_unknown == {"user_id": 1, "item_id": 1}
    batch = provider.batch(encoded, torch.arange(3))
    kjt = batch.sparse_features
    assert kjt.keys() == ["user_id", "item_id"]
    assert kjt.values().tolist() == [3, 0, 1, 3, 1, 0]  # users 7, ?, 5 then items 30, 10, ?
    assert kjt.lengths().tolist() == [1] * 6
    assert batch.labels.tolist() == [1.0, 0.0, 1.0]


def test_dense_is_standardized_scalars_then_vectors():
    provider = _provider()
    encoded = provider.encode(_frame([5, 6], [10, 20], labels=[0, 1], x=[2.0, 4.0]))
    # train x = 0, 2, 2, 4: mean 2, std sqrt(2)
    expected = torch.tensor([[0.0, 0, 1], [2 / np.sqrt(2), 2, 3]], dtype=torch.float32)
    torch.testing.assert_close(encoded.dense, expected)
    assert provider.dense_keys_ == [("x", 1), ("text", 2)]


def test_cover_by_cohort_with_default_fallback_and_counted_misses():
    cohorts = pl.DataFrame({"user_id": [5, 6], "cohort_id": [1, 2]})
    provider = _provider(cover_store=_store(), user_cohorts=cohorts)
    # (user 5 -> cohort 1, item 10): exact; (6 -> 2, 10): fallback to default; (7 -> no cohort, so
    # DEFAULT_COHORT, 20): exact default, counted as default_cohort; (5, 30): missing
    encoded = provider.encode(_frame([5, 6, 7, 5], [10, 10, 20, 30]))
    cover = encoded.dense[:, 3:]  # after x (1) and text (2): cover (3), has_cover (1)
    expected = torch.tensor([[2, 2, 2, 1], [1, 1, 1, 1], [3, 3, 3, 1], [0, 0, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(cover, expected)
    counts = (
        encoded.n_cover_exact,
        encoded.n_cover_fallback,
        encoded.n_cover_missing,
        encoded.n_default_cohort,
    )
    assert counts == (2, 1, 1, 1)
    assert encoded.labels.tolist() == [0.0] * 4  # no label column: zero labels


def test_keyed_dense_splits_by_feature():
    provider = _provider(cover_store=_store())
    encoded = provider.encode(_frame([5], [10], labels=[1]))
    keyed = provider.keyed_dense(encoded.dense)
    assert keyed.keys() == ["x", "text", "cover", "has_cover"]
    assert keyed.length_per_key() == [1, 2, 3, 1]
    torch.testing.assert_close(keyed["cover"], torch.tensor([[1.0, 1.0, 1.0]]))


def test_bad_frames_are_refused_by_name():
    provider = _provider()
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['text'\]"):
        provider.encode(_frame([5], [10]).drop("text"))
    with pytest.raises(SchemaError, match="'user_id' holds 1 null"):
        provider.encode(_frame([5, None], [10, 20]))
    with pytest.raises(SchemaError, match="'item_id' must be an integer"):
        provider.encode(_frame([5], [10]).with_columns(pl.col("item_id").cast(pl.String)))
    with pytest.raises(SchemaError, match="'x' holds NaN"):
        provider.encode(_frame([5], [10], x=[np.nan]))
    wide = _frame([5], [10]).with_columns(
        pl.Series("text", np.zeros((1, 3), np.float32), dtype=pl.Array(pl.Float32, 3))
    )
    with pytest.raises(SchemaError, match="width 3; fitted on 2"):
        provider.encode(wide)
    with pytest.raises(SchemaError, match="at least one sparse"):
        FeatureProvider([], ["x"]).fit(_frame([5], [10], labels=[1]))
    with pytest.raises(SchemaError, match="label column 'label' must hold only 0 and 1"):
        provider.encode(_frame([5], [10], labels=[4.0]))
    with pytest.raises(SchemaError, match="several cohorts"):
        FeatureProvider(["user_id"], user_cohorts=pl.DataFrame({"user_id": [1, 1], "cohort_id": [0, 2]})).fit(
            _frame([5], [10], labels=[1])
        )
    with pytest.raises(SchemaError, match="user_cohorts is missing"):
        FeatureProvider(["user_id"], user_cohorts=pl.DataFrame({"user_id": [1]})).fit(
            _frame([5], [10], labels=[1])
        )


def test_save_load_round_trip(tmp_path):
    cohorts = pl.DataFrame({"user_id": [5, 6], "cohort_id": [1, 2]})
    provider = _provider(cover_store=_store(), user_cohorts=cohorts)
    loaded = FeatureProvider.load(provider.save(tmp_path / "provider"))
    frame = _frame([5, 6, 99], [10, 30, 20], labels=[1, 0, 1])
    a, b = provider.encode(frame), loaded.encode(frame)
    torch.testing.assert_close(a.ids, b.ids)
    torch.testing.assert_close(a.dense, b.dense)
    assert (a.n_unknown, a.n_cover_exact, a.n_cover_missing) == (
        b.n_unknown,
        b.n_cover_exact,
        b.n_cover_missing,
    )


def test_ids_only_gets_a_constant_dense_input():
    provider = FeatureProvider(["user_id"]).fit(_frame([5, 6], [10, 20], labels=[1, 0]))
    assert provider.dense_keys_ == [("bias", 1)]
    torch.testing.assert_close(provider.encode(_frame([7], [10])).dense, torch.ones(1, 1))
