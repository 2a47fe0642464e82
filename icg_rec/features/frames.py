"""Ranking features on interaction frames: item vectors, and label-derived features computed out-of-fold.

Label-derived features (click rates per user/item, user taste cosines) are the easy way to leak the
label into training: an in-sample click rate of an item seen once IS its label. Here every such
feature of a training row is computed from the other K-1 folds of the training rows (K-fold target
statistics), and every test row's from all training rows. A row's own label never enters its features.
"""

import numpy as np
import polars as pl
from scipy import sparse
from sklearn.decomposition import PCA

from icg_rec.errors import SchemaError
from icg_rec.validation import check_columns, lookup

FOLD = "_fold"  # temporary column: out-of-fold assignment of training rows


def attach_item_vectors(
    frame: pl.DataFrame, item_ids: np.ndarray, vectors: np.ndarray, column: str
) -> pl.DataFrame:
    """Adds `column` = the vector of each row's item, as pl.Array(Float32, d).

    Args:
        frame: interactions with an `item_id` column.
        item_ids: (n_items,) ids the rows of `vectors` belong to (unique).
        vectors: (n_items, d) float item vectors.
        column: name of the new column.

    Returns:
        `frame` with the new column, rows in the same order.
    """
    lookup = _item_lookup(frame, item_ids, column)
    values = np.asarray(vectors, dtype=np.float32)[lookup]  # (n_rows, d)
    return frame.with_columns(pl.Series(column, values, dtype=pl.Array(pl.Float32, values.shape[1])))


def pca_item_vectors(
    item_ids: np.ndarray, vectors: np.ndarray, fit_item_ids: np.ndarray, dim: int, seed: int = 0
) -> np.ndarray:
    """Reduces item vectors to `dim` principal components fitted on `fit_item_ids` only.

    Args:
        item_ids: (n_items,) ids of the rows of `vectors`.
        vectors: (n_items, D) float item vectors.
        fit_item_ids: ids of the items the PCA may learn from (training items: no peeking at test items).
        dim: number of components kept.
        seed: seeds the randomized SVD solver.

    Returns:
        (n_items, dim) float32, rows in the order of `item_ids`.
    """
    rows = np.isin(item_ids, fit_item_ids)
    if int(rows.sum()) < dim:
        raise SchemaError(f"PCA to {dim} dims needs at least {dim} fitting items; {int(rows.sum())} match")
    pca = PCA(n_components=dim, random_state=seed).fit(np.asarray(vectors, dtype=np.float64)[rows])
    return pca.transform(np.asarray(vectors, dtype=np.float64)).astype(np.float32)


def fold_ids(n_rows: int, n_folds: int, seed: int) -> np.ndarray:
    """(n_rows,) int64 fold of each row, as balanced as possible, shuffled with `seed`."""
    if n_folds < 2:
        raise ValueError(f"out-of-fold features need n_folds >= 2, got {n_folds}")
    return np.random.default_rng(seed).permutation(np.arange(n_rows) % n_folds).astype(np.int64)


def add_target_stats(
    train: pl.DataFrame,
    test: pl.DataFrame,
    keys: tuple[str, ...] = ("user_id", "item_id"),
    n_folds: int = 5,
    prior_strength: float = 10.0,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Adds `{key}_ctr` (smoothed click rate, out-of-fold on train) and `{key}_log_n` per key.

    `{key}_ctr` = (clicks + prior_strength * mean) / (rows + prior_strength), counted on the other
    folds for a training row and on all training rows for a test row; an unseen key gets the mean.
    `{key}_log_n` = log(1 + rows of the key in all of train): a count, not a label, so no folds.

    Args:
        train: training interactions (`label` and the key columns).
        test: test interactions (key columns).
        keys: id columns to compute statistics for.
        n_folds: K of the K-fold scheme on train.
        prior_strength: pseudo-rows of the mean click rate added to every key.
        seed: seeds the fold assignment.

    Returns:
        (train, test) with the new columns, rows in their original order.
    """
    check_columns(train, ["label", *keys], "train frame")
    check_columns(test, list(keys), "test frame")
    folds = fold_ids(len(train), n_folds, seed)
    train = train.with_columns(pl.Series(FOLD, folds))
    fitted = [_rates(train.filter(pl.col(FOLD) != k), keys, prior_strength) for k in range(n_folds)]
    out_train = _join_oof(train, fitted, keys, n_folds)
    out_test = _join_rates(test, _rates(train, keys, prior_strength), keys)
    counts = {key: train.group_by(key).len(name=f"{key}_log_n") for key in keys}
    for key in keys:
        out_train = _join_count(out_train, counts[key], key)
        out_test = _join_count(out_test, counts[key], key)
    return out_train.drop(FOLD), out_test


def add_taste_cosine(
    train: pl.DataFrame,
    test: pl.DataFrame,
    item_ids: np.ndarray,
    vectors: np.ndarray,
    column: str,
    n_folds: int = 5,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Adds `column` = cos(item, user's mean clicked item) - cos(item, user's mean skipped item).

    The user means come from the other folds for a training row and from all training rows for a
    test row. A user with no clicked (or no skipped) item there contributes 0 for that term.

    Args:
        train: training interactions (`user_id`, `item_id`, `label`).
        test: test interactions (`user_id`, `item_id`).
        item_ids: (n_items,) ids of the rows of `vectors`; must cover every item in train and test.
        vectors: (n_items, d) float item vectors (e.g. poster or text embeddings).
        column: name of the new column.
        n_folds: K of the K-fold scheme on train.
        seed: seeds the fold assignment.

    Returns:
        (train, test) with the new Float64 column, rows in their original order.
    """
    check_columns(train, ["user_id", "item_id", "label"], "train frame")
    check_columns(test, ["user_id", "item_id"], "test frame")
    unit = np.asarray(vectors, dtype=np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)  # (n_items, d)
    users = np.unique(np.concatenate([train["user_id"].to_numpy(), test["user_id"].to_numpy()]))
    tr_user = np.searchsorted(users, train["user_id"].to_numpy())
    te_user = np.searchsorted(users, test["user_id"].to_numpy())
    tr_item = _item_lookup(train, item_ids, column)
    te_item = _item_lookup(test, item_ids, column)
    labels = train["label"].to_numpy().astype(np.float64)
    folds = fold_ids(len(train), n_folds, seed)

    def taste(fit_rows: np.ndarray, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        score = np.zeros(len(user))
        for sign, target in ((1.0, 1.0), (-1.0, 0.0)):
            rows = fit_rows & (labels == target)
            hits = sparse.csr_matrix(
                (np.ones(int(rows.sum())), (tr_user[rows], tr_item[rows])), shape=(len(users), len(unit))
            )
            mean = hits @ unit  # (n_users, d) sums; direction is all the cosine needs
            mean = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
            score += sign * np.einsum("nd,nd->n", mean[user], unit[item])  # zero rows give 0
        return score

    tr_score = np.zeros(len(train))
    for k in range(n_folds):
        held = folds == k
        tr_score[held] = taste(~held, tr_user[held], tr_item[held])
    te_score = taste(np.ones(len(train), dtype=bool), te_user, te_item)
    return train.with_columns(pl.Series(column, tr_score)), test.with_columns(pl.Series(column, te_score))


def _rates(fit: pl.DataFrame, keys: tuple[str, ...], prior_strength: float) -> dict:
    mean = float(fit["label"].mean())
    tables = {
        key: fit.group_by(key).agg(
            ((pl.col("label").sum() + prior_strength * mean) / (pl.len() + prior_strength)).alias(
                f"{key}_ctr"
            )
        )
        for key in keys
    }
    return {"mean": mean, "tables": tables}


def _join_rates(frame: pl.DataFrame, rates: dict, keys: tuple[str, ...]) -> pl.DataFrame:
    for key in keys:
        frame = frame.join(rates["tables"][key], on=key, how="left", maintain_order="left").with_columns(
            pl.col(f"{key}_ctr").fill_null(rates["mean"])
        )
    return frame


def _join_oof(train: pl.DataFrame, fitted: list[dict], keys: tuple[str, ...], n_folds: int) -> pl.DataFrame:
    out = train.with_columns([pl.lit(None, dtype=pl.Float64).alias(f"{key}_ctr") for key in keys])
    for k in range(n_folds):
        joined = _join_rates(train.select(keys), fitted[k], keys)
        held = pl.col(FOLD) == k
        out = out.with_columns(
            [pl.when(held).then(joined[f"{key}_ctr"]).otherwise(pl.col(f"{key}_ctr")) for key in keys]
        )
    return out


def _join_count(frame: pl.DataFrame, counts: pl.DataFrame, key: str) -> pl.DataFrame:
    name = f"{key}_log_n"
    return frame.join(counts, on=key, how="left", maintain_order="left").with_columns(
        pl.col(name).fill_null(0).cast(pl.Float64).log1p()
    )


def _item_lookup(frame: pl.DataFrame, item_ids: np.ndarray, what: str) -> np.ndarray:
    check_columns(frame, ["item_id"], "frame")
    ids = np.asarray(item_ids, dtype=np.int64)
    order = np.argsort(ids)
    rows = frame["item_id"].to_numpy().astype(np.int64)
    pos, known = lookup(ids[order], rows)
    if missing := int((~known).sum()):
        sample = sorted(set(rows[~known].tolist()))[:5]
        raise SchemaError(f"{missing} row(s) have item ids with no vector for {what!r}, e.g. {sample}")
    return order[pos]
