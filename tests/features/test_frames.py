"""Feature frames: item-vector joins, PCA on training items only, and out-of-fold label features."""

import numpy as np
import polars as pl
import pytest

from icg_rec.errors import SchemaError
from icg_rec.features.frames import (
    add_target_stats,
    add_taste_cosine,
    attach_item_vectors,
    fold_ids,
    pca_item_vectors,
)


def _train(n: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "user_id": rng.integers(0, 8, n),
            "item_id": rng.integers(0, 12, n),
            "label": rng.integers(0, 2, n).astype(np.float64),
        }
    )


def _flip(frame: pl.DataFrame, row: int) -> pl.DataFrame:
    labels = frame["label"].to_numpy().copy()
    labels[row] = 1.0 - labels[row]
    return frame.with_columns(pl.Series("label", labels))


def test_target_stats_of_a_row_never_see_its_own_label():
    # items seen exactly once: an in-sample click rate would equal the label itself
    train = pl.DataFrame({"user_id": [0] * 10, "item_id": list(range(10)), "label": [1.0, 0.0] * 5})
    out, _ = add_target_stats(train, train.head(1), n_folds=5, seed=0)
    # each item is unseen in the other folds, so its ctr is the other folds' mean click rate
    folds = fold_ids(10, 5, 0)
    labels = train["label"].to_numpy()
    expected = np.array([labels[folds != folds[i]].mean() for i in range(10)])
    np.testing.assert_allclose(out["item_id_ctr"].to_numpy(), expected)
    assert len(set(out["item_id_ctr"].to_list()) & {0.0, 1.0}) == 0  # an in-sample rate would be 0 or 1
    # and flipping any row's label leaves that row's own features unchanged
    for row in (0, 3, 7):
        flipped, _ = add_target_stats(_flip(train, row), train.head(1), n_folds=5, seed=0)
        assert flipped["item_id_ctr"][row] == out["item_id_ctr"][row]
        assert flipped["user_id_ctr"][row] == out["user_id_ctr"][row]


def test_target_stats_for_test_use_all_train_with_smoothing():
    train = pl.DataFrame({"user_id": [0, 0, 0, 1], "item_id": [5, 5, 6, 6], "label": [1.0, 1.0, 0.0, 0.0]})
    test = pl.DataFrame({"user_id": [0, 9], "item_id": [5, 77]})
    _, out = add_target_stats(train, test, n_folds=2, prior_strength=2.0, seed=0)
    mean = 0.5
    assert out["item_id_ctr"].to_list() == [pytest.approx((2 + 2 * mean) / (2 + 2)), mean]
    assert out["user_id_ctr"].to_list() == [pytest.approx((2 + 2 * mean) / (3 + 2)), mean]
    assert out["item_id_log_n"].to_list() == [pytest.approx(np.log(3)), 0.0]


def test_taste_cosine_is_out_of_fold_and_matches_a_direct_computation():
    train = _train()
    test = pl.DataFrame({"user_id": [0, 3], "item_id": [1, 2]})
    ids = np.arange(12)
    vectors = np.random.default_rng(1).normal(size=(12, 4))
    out, out_test = add_taste_cosine(train, test, ids, vectors, "taste", n_folds=4, seed=0)
    for row in (0, 5, 9):
        flipped, _ = add_taste_cosine(_flip(train, row), test, ids, vectors, "taste", n_folds=4, seed=0)
        assert flipped["taste"][row] == out["taste"][row]
    # test rows: from all of train
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def cos(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    for i, (user, item) in enumerate([(0, 1), (3, 2)]):
        rows = train.filter(pl.col("user_id") == user)
        clicked = unit[rows.filter(pl.col("label") == 1)["item_id"].to_numpy()].sum(axis=0)
        skipped = unit[rows.filter(pl.col("label") == 0)["item_id"].to_numpy()].sum(axis=0)
        assert out_test["taste"][i] == pytest.approx(cos(unit[item], clicked) - cos(unit[item], skipped))


def test_taste_cosine_of_a_user_without_history_is_zero():
    train = _train()
    test = pl.DataFrame({"user_id": [99], "item_id": [3]})
    _, out = add_taste_cosine(train, test, np.arange(12), np.eye(12), "t", n_folds=2)
    assert out["t"].to_list() == [0.0]


def test_attach_item_vectors_and_missing_items():
    frame = pl.DataFrame({"item_id": [30, 10, 30]})
    out = attach_item_vectors(frame, np.array([10, 20, 30]), np.array([[1.0], [2.0], [3.0]]), "v")
    assert out.schema["v"] == pl.Array(pl.Float32, 1)
    assert out["v"].to_list() == [[3.0], [1.0], [3.0]]
    with pytest.raises(SchemaError, match=r"1 row\(s\) have item ids with no vector for 'v', e.g. \[40\]"):
        attach_item_vectors(pl.DataFrame({"item_id": [10, 40]}), np.array([10, 20]), np.ones((2, 1)), "v")


def test_pca_is_fitted_on_the_given_items_only():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 5))
    vectors[15:] += 100.0  # test items far away: a PCA that saw them would point at them
    ids = np.arange(20)
    reduced = pca_item_vectors(ids, vectors, ids[:15], dim=2)
    assert reduced.shape == (20, 2) and reduced.dtype == np.float32
    np.testing.assert_allclose(reduced[:15].mean(axis=0), 0.0, atol=1e-5)  # centred on fitting items
    with pytest.raises(SchemaError, match="at least 3 fitting items"):
        pca_item_vectors(ids, vectors, ids[:2], dim=3)


def test_missing_columns_and_bad_folds():
    with pytest.raises(SchemaError, match=r"train frame is missing column\(s\) \['label'\]"):
        add_target_stats(_train().drop("label"), _train())
    with pytest.raises(ValueError, match="n_folds >= 2"):
        fold_ids(10, 1, 0)
