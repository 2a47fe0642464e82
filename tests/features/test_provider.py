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
    for c in ("user_id", "item_id"):
        torch.testing.assert_close(a.ids[c].values, b.ids[c].values)
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


def _history_frame(histories, users=None, labels=None) -> pl.DataFrame:
    n = len(histories)
    return pl.DataFrame(
        {
            "user_id": users if users is not None else [5] * n,
            "item_id": [10] * n,
            "history": pl.Series(histories, dtype=pl.List(pl.Int64)),
            "label": labels if labels is not None else [1.0, 0.0] * (n // 2) + [1.0] * (n % 2),
        }
    )


def test_list_columns_become_jagged_kjt_keys():
    train = _history_frame([[10, 20], [], [30, 10, 10]])
    provider = FeatureProvider(["user_id", "history"]).fit(train)
    assert provider.lists_ == ["history"]
    assert provider.table_sizes() == {"user_id": 2, "history": 4}  # vocabulary 10, 20, 30 from the lists
    encoded = provider.encode(_history_frame([[30], [99, 20, 10], []]))
    assert encoded.n_unknown == {"user_id": 0, "history": 1}  # ids, not rows, for a list column
    kjt = provider.batch(encoded, torch.tensor([2, 1, 0])).sparse_features
    assert kjt.keys() == ["user_id", "history"]
    assert kjt.lengths().tolist() == [1, 1, 1, 0, 3, 1]  # rows 2, 1, 0 of user_id, then of history
    assert kjt.values().tolist() == [1, 1, 1, 0, 2, 1, 3]  # history row 1: 99 -> 0, 20 -> 2, 10 -> 1


def test_cover_lists_average_the_listed_items_covers_under_the_users_cohort():
    cohorts = pl.DataFrame({"user_id": [5, 6], "cohort_id": [1, 2]})
    provider = FeatureProvider(
        ["user_id"], cover_store=_store(), user_cohorts=cohorts, cover_lists=["history"]
    )
    provider.fit(_history_frame([[10], [20]]))
    assert provider.dense_keys_ == [("cover", 3), ("has_cover", 1), ("history_cover", 3)]
    # user 5 (cohort 1): 10 exact (2), 20 fallback (3), 30 missing -> mean (2 + 3) / 2; user 6 (cohort 2):
    # 10 fallback (1); user 5, empty list: zeros
    encoded = provider.encode(_history_frame([[10, 20, 30], [10], []], users=[5, 6, 5]))
    expected = torch.tensor([[2.5] * 3, [1.0] * 3, [0.0] * 3])
    torch.testing.assert_close(encoded.dense[:, 4:], expected)
    assert encoded.list_covers == {"history": {"exact": 1, "fallback": 2, "missing": 1}}


def test_list_columns_are_checked_and_saved(tmp_path):
    provider = FeatureProvider(["user_id", "history"]).fit(_history_frame([[10, 20], [30]]))
    with pytest.raises(SchemaError, match="'history' must be a list of integer ids"):
        provider.encode(_frame([5], [10]).with_columns(history=pl.lit(10)))
    with pytest.raises(SchemaError, match="'history' holds 1 null id"):
        provider.encode(_history_frame([[10, None]]))
    with pytest.raises(SchemaError, match="cover_lists .* need a cover_store"):
        FeatureProvider(["user_id"], cover_lists=["history"]).fit(_history_frame([[10]]))
    with pytest.raises(SchemaError, match="'user_id' must be an integer id"):
        provider.encode(_history_frame([[10]]).with_columns(user_id=pl.Series([[5]])))
    loaded = FeatureProvider.load(provider.save(tmp_path / "provider"))
    frame = _history_frame([[20, 30, 99], []])
    a, b = provider.encode(frame), loaded.encode(frame)
    assert loaded.lists_ == ["history"]
    torch.testing.assert_close(a.ids["history"].values, b.ids["history"].values)
    torch.testing.assert_close(a.ids["history"].offsets, b.ids["history"].offsets)
