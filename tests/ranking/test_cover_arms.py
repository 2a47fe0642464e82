"""The three cover arms on a tiny world whose clicks follow the cover made for the user's cohort."""

import numpy as np
import polars as pl
import pytest
import torch

from icg_rec.errors import SchemaError, UnknownIdError
from icg_rec.ranking.base import FeatureSpec
from icg_rec.ranking.cover_arms import (
    RATES,
    CohortCovers,
    CoverArmsConfig,
    ItemCovers,
    build_cover_arms,
    load_refreshed_covers,
    read_cover_run,
    reward_model_scorer,
    run_cover_arms,
)
from icg_rec.ranking.lift import LiftConfig
from icg_rec.ranking.lightgbm_ranker import LightGBMConfig, LightGBMRanker
from icg_rec.rewards.personalized import PersonalizedConfig

N_USERS, N_ITEMS, SIZE = 60, 40, 8
TINY = LightGBMConfig(n_estimators=30, min_child_samples=5, min_data_per_group=5)
# the tiny world's cohorts are its truth, not fitted on training clicks: they are taken as given
CONFIG = CoverArmsConfig(
    pca_dim=2, n_folds=3, cohorts="given", lift=LiftConfig(baseline="no_cover", seeds=[0], n_boot=100)
)


def _embed(images: torch.Tensor) -> np.ndarray:
    return images.mean(dim=(2, 3)).numpy()  # (n, 3) mean colour


def _world(seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, ItemCovers, CohortCovers, pl.DataFrame]:
    """Every (user, item) pair once; user u is in cohort u % 2; a click is likely where the cover made for
    the (item, cohort) is bright, and that cover's brightness is all that tells it. Originals are noise."""
    rng = np.random.default_rng(seed)
    bright = rng.random((N_ITEMS, 2)) < 0.5  # (item, cohort) -> the cohort's cover of the item is bright
    users, items = (a.ravel() for a in np.meshgrid(np.arange(N_USERS), np.arange(N_ITEMS), indexing="ij"))
    p = np.where(bright[items, users % 2], 0.6, 0.05)
    frame = pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "label": (rng.random(len(users)) < p).astype(np.float64),
            "timestamp": rng.permutation(len(users)),
        }
    ).sort("timestamp")
    original = ItemCovers(
        np.arange(N_ITEMS), torch.rand(N_ITEMS, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    )
    item_ids, cohort_ids = (a.ravel() for a in np.meshgrid(np.arange(N_ITEMS), np.arange(2), indexing="ij"))
    level = torch.from_numpy(np.where(bright[item_ids, cohort_ids], 0.8, 0.2)).float()  # (n_items * 2,)
    refreshed = CohortCovers(
        item_ids, cohort_ids, level[:, None, None, None].expand(-1, 3, SIZE, SIZE).clone()
    )
    cohorts = pl.DataFrame({"user_id": np.arange(N_USERS), "cohort_id": np.arange(N_USERS) % 2})
    return frame.head(1920), frame.tail(480), original, refreshed, cohorts


def test_the_arm_whose_covers_carry_the_clicks_beats_no_cover():
    train, test, original, refreshed, cohorts = _world()
    result = run_cover_arms(
        train,
        test,
        original,
        refreshed,
        cohorts,
        _embed,
        lambda: LightGBMRanker(TINY),
        CONFIG,
        progress=False,
    )
    assert list(result.arms) == ["no_cover", "original_cover", "personalized_cover"]
    assert set(result.lift) == {"original_cover", "personalized_cover"}
    assert (result.n_train, result.n_test) == (1920, 480)
    personalized = result.lift["personalized_cover"]
    assert personalized.auc_delta > 0.05 and personalized.ci95[0] > 0.0 and personalized.relaimpr > 0.2
    assert result.arms["personalized_cover"].auc > result.arms["original_cover"].auc + 0.05


def test_features_and_out_of_fold_scores_route_each_row_to_its_cover():
    train, test, original, refreshed, cohorts = _world()
    fitted_on: list[int] = []

    def fit_scorer(rows: pl.DataFrame):
        fitted_on.append(rows.height)
        seen = set(rows.select("user_id", "item_id").iter_rows())

        def score(user_ids, item_ids, images):
            leak = np.array(
                [(u, i) in seen for u, i in zip(user_ids.tolist(), item_ids.tolist(), strict=True)]
            )
            return 10.0 * leak + images.mean(dim=(1, 2, 3)).double().numpy()

        return score

    train, test, arms = build_cover_arms(
        train, test, original, refreshed, cohorts, _embed, CONFIG, fit_scorer
    )
    assert fitted_on == [1280, 1280, 1280]  # each fold's complement only: test rows get the fold mean
    ids = ["user_id", "item_id"]
    assert arms == {
        "no_cover": FeatureSpec(sparse=ids, dense=RATES),
        "original_cover": FeatureSpec(ids, [*RATES, "original_cover_score"], ["original_cover"]),
        "personalized_cover": FeatureSpec(ids, [*RATES, "personalized_cover_score"], ["personalized_cover"]),
    }
    for frame in (train, test):
        assert frame.schema["personalized_cover"] == pl.Array(pl.Float32, 2)
        bright = refreshed.images[:, 0, 0, 0].numpy().reshape(N_ITEMS, 2)  # (item, cohort)
        want = bright[frame["item_id"].to_numpy(), frame["user_id"].to_numpy() % 2]
        # no row is scored by a scorer that saw it (that would add 10), and each gets its cohort's cover
        np.testing.assert_allclose(frame["personalized_cover_score"].to_numpy(), want, rtol=1e-6)
        means = original.images.mean(dim=(1, 2, 3)).double().numpy()[frame["item_id"].to_numpy()]
        np.testing.assert_allclose(frame["original_cover_score"].to_numpy(), means, rtol=1e-6)
    assert train["cohort_id"].to_list() == (train["user_id"] % 2).to_list()


class _TasteScorer:
    """A FoldScorer whose user vectors place each user by taste (user % 2), fitted on some rows."""

    def __init__(self, rows: pl.DataFrame, calls: list) -> None:
        self.user_ids = np.unique(rows["user_id"].to_numpy())
        self.calls = calls

    def __call__(self, user_ids, item_ids, images):
        return images.mean(dim=(1, 2, 3)).double().numpy()

    def user_vectors(self, user_ids):
        self.calls.append(np.asarray(user_ids))
        u = np.asarray(user_ids, dtype=np.float64)
        return np.column_stack([5.0 * (u % 2), 0.1 * np.sin(u)])  # (n, 2)


def test_training_rows_get_out_of_fold_cohorts_named_after_the_given_ones():
    train, test, original, refreshed, _ = _world()
    # given cohort ids 7 (even users) and 3 (odd): the fold k-means labels must be renamed to them
    given = pl.DataFrame({"user_id": np.arange(N_USERS), "cohort_id": np.where(np.arange(N_USERS) % 2, 3, 7)})
    refreshed = CohortCovers(refreshed.item_ids, np.where(refreshed.cohort_ids == 1, 3, 7), refreshed.images)
    calls: list = []
    config = CoverArmsConfig(pca_dim=2, n_folds=3, lift=CONFIG.lift)
    assert config.cohorts == "out_of_fold"
    train2, test2, _ = build_cover_arms(
        train, test, original, refreshed, given, _embed, config, lambda rows: _TasteScorer(rows, calls)
    )
    assert train2["cohort_id"].to_list() == np.where(train2["user_id"].to_numpy() % 2, 3, 7).tolist()
    assert test2["cohort_id"].to_list() == np.where(test2["user_id"].to_numpy() % 2, 3, 7).tolist()
    assert len(calls) == 6  # per fold: the fitted users (k-means), then the held-out rows' users


def test_out_of_fold_cohorts_need_fold_scorers():
    train, test, original, refreshed, cohorts = _world()
    config = CoverArmsConfig(pca_dim=2, n_folds=3, lift=CONFIG.lift)
    with pytest.raises(ValueError, match="out-of-fold cohorts .* cohorts='given'"):
        build_cover_arms(train, test, original, refreshed, cohorts, _embed, config)
    with pytest.raises(ValueError, match="out-of-fold cohorts"):
        build_cover_arms(train, test, original, refreshed, cohorts, _embed, config, lambda rows: _embed)
    with pytest.raises(ValueError, match="must be one of"):
        build_cover_arms(train, test, original, refreshed, cohorts, _embed, CoverArmsConfig(cohorts="fold"))


def test_a_log_with_cover_ids_gets_the_shown_covers_embedding_and_score():
    train, test, original, refreshed, cohorts = _world()
    generic = torch.full((N_ITEMS, 3, SIZE, SIZE), 0.5)  # cohort -1: the generic cover of every item
    refreshed = CohortCovers(
        np.concatenate([refreshed.item_ids, np.arange(N_ITEMS)]),
        np.concatenate([refreshed.cohort_ids, np.full(N_ITEMS, -1)]),
        torch.cat([refreshed.images, generic]),
    )
    train = train.with_columns(cover_id=(pl.col("user_id") + pl.col("item_id")) % 4)  # 0, 1, 2, 3
    test = test.with_columns(cover_id=pl.lit(0, pl.Int64))

    def fit_scorer(rows: pl.DataFrame):
        return lambda user_ids, item_ids, images: images.mean(dim=(1, 2, 3)).double().numpy()

    train, test, _ = build_cover_arms(train, test, original, refreshed, cohorts, _embed, CONFIG, fit_scorer)
    items, cover = train["item_id"].to_numpy(), train["cover_id"].to_numpy()
    level = refreshed.images[:, 0, 0, 0].numpy().reshape(-1)
    pair = {
        (i, c): v
        for i, c, v in zip(refreshed.item_ids.tolist(), refreshed.cohort_ids.tolist(), level, strict=True)
    }
    means = original.images.mean(dim=(1, 2, 3)).double().numpy()
    want = [
        means[i] if k == 0 else pair[(i, k - 2)] for i, k in zip(items.tolist(), cover.tolist(), strict=True)
    ]
    np.testing.assert_allclose(train["original_cover_score"].to_numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(
        test["original_cover_score"].to_numpy(), means[test["item_id"].to_numpy()], rtol=1e-6
    )
    with pytest.raises(UnknownIdError, match="logged cover_id"):
        build_cover_arms(
            train.drop(["original_cover", "personalized_cover", "cohort_id", *RATES, "original_cover_score",
                        "personalized_cover_score"]).with_columns(cover_id=pl.lit(9, pl.Int64)),
            test.select("user_id", "item_id", "label", "timestamp"),
            original, refreshed, cohorts, _embed, CONFIG,
        )  # fmt: skip


def test_a_missing_cohort_cover_is_named():
    train, test, original, refreshed, cohorts = _world()
    keep = ~((refreshed.item_ids == 3) & (refreshed.cohort_ids == 1))
    partial = CohortCovers(refreshed.item_ids[keep], refreshed.cohort_ids[keep], refreshed.images[keep])
    with pytest.raises(
        UnknownIdError,
        match=r"refreshed covers lack 1 \('item_id', 'cohort_id'\) key\(s\) that rows need, e.g. \[\(3, 1\)\]",
    ):
        build_cover_arms(train, test, original, partial, cohorts, _embed, CONFIG)
    no_item = ItemCovers(original.item_ids[1:], original.images[1:])
    with pytest.raises(
        UnknownIdError,
        match=r"original covers lack 1 \('item_id',\) key\(s\) that rows need, e.g. \[\(0,\)\]",
    ):
        build_cover_arms(train, test, no_item, refreshed, cohorts, _embed, CONFIG)


def test_a_user_without_cohort_is_named():
    train, test, original, refreshed, cohorts = _world()
    without = cohorts.filter(pl.col("user_id") != 7)
    with pytest.raises(
        UnknownIdError, match=r"1 user id\(s\) of train have no cohort in user_cohorts, e.g. \[7\]"
    ):
        build_cover_arms(train, test, original, refreshed, without, _embed, CONFIG)
    with pytest.raises(SchemaError, match="test already has a cohort_id column"):
        build_cover_arms(train, test.with_columns(cohort_id=0), original, refreshed, cohorts, _embed, CONFIG)


def test_bad_config_and_folders_are_refused(tmp_path):
    train, test, original, refreshed, cohorts = _world()
    with pytest.raises(ValueError, match="compare with 'no_cover'; got lift.baseline='base'"):
        run_cover_arms(
            train,
            test,
            original,
            refreshed,
            cohorts,
            _embed,
            LightGBMRanker,
            CoverArmsConfig(lift=LiftConfig()),
        )
    with pytest.raises(SchemaError, match="holds no manifest.parquet"):
        load_refreshed_covers(tmp_path)
    with pytest.raises(ValueError, match="needs a 'cnn' cover tower"):
        reward_model_scorer(PersonalizedConfig(cover_tower="embedding"), original)


def test_reward_model_scorer_scores_unseen_users_as_the_generic_user():
    train, _, original, refreshed, _ = _world()
    config = PersonalizedConfig(cover_tower="cnn", image_size=SIZE, epochs=1, cnn_channels=4)
    score = reward_model_scorer(config, original)(train.filter(pl.col("user_id") < 50))
    p = score(np.array([0, 55, -1]), np.array([1, 1, 1]), refreshed.images[:3])
    assert p.shape == (3,) and p.dtype == np.float64 and ((p > 0) & (p < 1)).all()
    assert p[1] == p[2]  # user 55 was not in the rows: scored as the generic user
    vectors = score.user_vectors(np.array([0, 55, -1]))
    assert vectors.shape == (3, config.dim) and (vectors[1] == vectors[2]).all()


def test_a_folder_without_a_refresh_is_named(tmp_path):
    with pytest.raises(
        SchemaError, match=r"lacks \[.*manifest.parquet.*cohorts.json'\]: expected a quickstart folder"
    ):
        read_cover_run(tmp_path)
