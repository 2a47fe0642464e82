"""The cover arms of a lift experiment: no cover features, the original cover, the user's cohort cover.

Every arm trains the same ranker on the same rows. `no_cover` reads the baseline features (ids and
out-of-fold id click rates). `original_cover` adds the embedding of the cover the row showed: the item's
original cover, or, when the log has a `cover_id` column, the logged cover (0 original, 1 generic =
refreshed cohort -1, 2 + c = the cover refreshed for cohort c, as icg_rec.ope.covers numbers them);
`personalized_cover` adds the embedding of the cover refreshed for the row user's cohort. Both cover
columns go through one PCA, fitted on the training items' covers of both kinds, so that the two arms'
columns live in the same coordinates and differ only in which cover they describe.

With a reward scorer (p(click | user, cover), e.g. the personalized reward model), each cover arm also
gets the score of its cover for the row's user. A scorer fitted on the training log has seen each
training row's label, so training rows are scored out-of-fold (by a scorer fitted on the other K-1
folds); otherwise the ranker would learn to trust an in-sample score that the test rows never get.
Test rows get the mean of the same K fold scorers, not a scorer refitted on all training rows: that
refit would be the very model the generator was aligned against, whose scores of the generated covers
are inflated by the alignment, so train and test rows would see differently distributed scores
(measured: the cohort-cover arm lost 0.011 AUC to no cover that way, eval/RESULTS.md).

The user's cohort is a training-label summary too: cohorts are k-means of a reward model's user vectors,
fitted on the training clicks, and a ranker given the cohort (or the cohort's cover) of a training row
would over-trust it. So by default (`cohorts="out_of_fold"`) a training row's cohort comes from the fold
scorer that never saw the row: k-means (as many cohorts as given) over that scorer's user vectors, each
fold cohort named after the given cohort it shares most users with (Hungarian matching, as cohort refits
keep their ids). Test rows keep the given cohorts, fitted on all training rows, i.e. on their past.
`cohorts="given"` takes `user_cohorts` as they are, for cohorts fitted on an earlier period than train.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl
import torch
from scipy.optimize import linear_sum_assignment

from icg_rec.cohorts.cache import CoverCache
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.refresh import GENERIC_COHORT, read_manifest
from icg_rec.errors import SchemaError, UnknownIdError
from icg_rec.features.frames import fold_ids, pca_item_vectors
from icg_rec.io import read_json
from icg_rec.ranking.base import FeatureSpec, Ranker
from icg_rec.ranking.lift import LiftConfig, LiftResult, build_lift_frames, run_lift
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel

NO_COVER, ORIGINAL, PERSONALIZED = "no_cover", "original_cover", "personalized_cover"
RATES = ["user_id_ctr", "item_id_ctr", "user_id_log_n", "item_id_log_n"]
SCORE_CHUNK = 4096  # rows per scorer call: bounds the (rows, 3, H, W) images gathered at once


@dataclass
class ItemCovers:
    """One cover per item: the originals."""

    item_ids: np.ndarray  # (n_items,) int64, unique
    images: torch.Tensor  # (n_items, 3, H, W) float in [0, 1]


@dataclass
class CohortCovers:
    """Covers refreshed per (item, cohort)."""

    item_ids: np.ndarray  # (n,) int64
    cohort_ids: np.ndarray  # (n,) int64; (item_id, cohort_id) pairs are unique
    images: torch.Tensor  # (n, 3, H, W) float in [0, 1]


class CoverScorer(Protocol):
    def __call__(self, user_ids: np.ndarray, item_ids: np.ndarray, images: torch.Tensor) -> np.ndarray:
        """p(click) (n,) float64 of each cover (n, 3, H, W) shown to its user (n,) for its item (n,)."""
        ...


class FoldScorer(CoverScorer, Protocol):
    """A CoverScorer that also holds user vectors (what out-of-fold cohorts are refitted from)."""

    user_ids: np.ndarray  # (n_users,) users the scorer was fitted on

    def user_vectors(self, user_ids: np.ndarray) -> np.ndarray:
        """(n, dim) user vectors; ids unknown to the scorer get the generic user's."""
        ...


COHORT_SOURCES = ("out_of_fold", "given")


@dataclass
class CoverArmsConfig:
    pca_dim: int = 8  # width of the cover-embedding column of both cover arms
    n_folds: int = 5  # K of the out-of-fold click rates and reward scores of training rows
    cohorts: str = (
        "out_of_fold"  # training rows' cohorts: "out_of_fold" (refit per fold) or "given" as passed
    )
    seed: int = 0  # seeds folds and the PCA
    lift: LiftConfig = field(default_factory=lambda: LiftConfig(baseline=NO_COVER))  # ranker seeds, bootstrap


@dataclass
class CoverRun:
    """What the cover arms need from a quickstart or refresh output folder."""

    refreshed: CohortCovers  # the per-cohort covers of its manifest
    user_cohorts: pl.DataFrame  # user_id, cohort_id of every user the cohorts were fitted on
    quickstart_config: dict | None  # quickstart.json's "config"; None for a refresh folder


def read_cover_run(folder: str | Path, cohorts: str | Path | None = None) -> CoverRun:
    """Reads a quickstart folder (quickstart.json, refresh/, cohorts/) or a refresh folder + its cohorts.

    Args:
        folder: the quickstart's `--out`, or a refresh's output folder (manifest.parquet, covers/).
        cohorts: the cohorts folder (cohorts.json + cohorts.safetensors); default `folder/cohorts`.

    Returns:
        The covers, the user -> cohort frame and, for a quickstart, its config.
    """
    folder = Path(folder)
    quickstart = folder / "quickstart.json"
    refresh = folder / "refresh" if quickstart.is_file() else folder
    cohorts = Path(cohorts) if cohorts is not None else folder / "cohorts"
    needed = [refresh / "manifest.parquet", refresh / "covers", cohorts / "cohorts.json"]
    if missing := [str(p) for p in needed if not p.exists()]:
        raise SchemaError(
            f"{folder} lacks {missing}: expected a quickstart folder (quickstart.json, refresh/, cohorts/) "
            "or a refresh folder (manifest.parquet, covers/) with its cohorts folder"
        )
    fitted = UserCohorts.load(cohorts)
    covers = load_refreshed_covers(refresh)
    manifest = read_manifest(refresh / "manifest.parquet").filter(pl.col("cohort_id") != GENERIC_COHORT)
    made_for = dict(manifest.select("cohort_id", "cohort_version").unique().iter_rows())
    versions = fitted.versions_
    if stale := sorted(c for c, v in made_for.items() if c >= len(versions) or versions[c] != v):
        raise SchemaError(
            f"{refresh / 'manifest.parquet'} holds covers of cohort(s) {stale} refreshed for other centroids "
            f"than those in {cohorts}; refresh again or pass the cohorts the refresh used"
        )
    return CoverRun(
        covers,
        pl.DataFrame({"user_id": fitted.user_ids_, "cohort_id": fitted.labels_}),
        read_json(quickstart)["config"] if quickstart.is_file() else None,
    )


def load_refreshed_covers(folder: str | Path) -> CohortCovers:
    """Reads the per-cohort covers of a refresh output folder (manifest.parquet + covers/).

    The generic covers (cohort -1) are left out: no arm shows them.

    Args:
        folder: what `refresh_covers` wrote (the quickstart's `refresh/`).

    Returns:
        The covers of every (item, cohort) of the manifest with cohort >= 0, sorted by (item, cohort).

    Raises:
        CheckpointError: the manifest is malformed (`read_manifest`), or a cover file is missing, does not
            decode or differs from the sha256 the manifest records.
    """
    folder = Path(folder)
    path = folder / "manifest.parquet"
    if not path.is_file():
        raise SchemaError(
            f"{folder} holds no manifest.parquet: expected the output folder of a cover refresh"
        )
    rows = read_manifest(path).filter(pl.col("cohort_id") != GENERIC_COHORT).sort("item_id", "cohort_id")
    if rows.height == 0:
        raise SchemaError(f"{path} holds no per-cohort covers (only generic ones)")
    cache = CoverCache(folder / "covers")
    images = torch.stack(
        [cache.get(k, h) for k, h in rows.select("key", "sha256").iter_rows()]
    )  # (n, 3, H, W)
    return CohortCovers(rows["item_id"].to_numpy(), rows["cohort_id"].to_numpy(), images)


def reward_model_scorer(
    config: PersonalizedConfig, original: ItemCovers, seed: int = 0
) -> Callable[[pl.DataFrame], "RewardModelScorer"]:
    """A `fit_scorer` that fits a personalized reward model (cnn tower) on the original covers' clicks.

    The fitted model scores any cover's pixels; a user it never saw (every row of the user fell in the
    held-out fold) is scored as its generic user (-1), as a new user would be.

    Args:
        config: reward model settings; the cover tower must be "cnn" (it reads the covers' pixels).
        original: the covers the logged impressions showed.
        seed: seeds every fit.

    Returns:
        rows -> scorer fitted on those rows.
    """
    if config.cover_tower != "cnn":
        raise ValueError(
            f"reward_model_scorer needs a 'cnn' cover tower to score pixels, got {config.cover_tower!r}"
        )
    features = CoverInputs(original.item_ids, original.images.numpy())

    def fit(rows: pl.DataFrame) -> RewardModelScorer:
        return RewardModelScorer(PersonalizedRewardModel(config).fit(rows, features, seed=seed))

    return fit


class RewardModelScorer:
    """A fitted personalized reward model as a FoldScorer; users it never saw are its generic user (-1)."""

    def __init__(self, model: PersonalizedRewardModel) -> None:
        self.model = model
        self.user_ids = model.user_ids_

    def __call__(self, user_ids: np.ndarray, item_ids: np.ndarray, images: torch.Tensor) -> np.ndarray:
        users = np.where(np.isin(user_ids, self.user_ids), user_ids, -1)
        # torch.tensor copies: ids from polars frames are read-only arrays
        inputs = RewardInputs(images, torch.tensor(item_ids), torch.tensor(users))
        with torch.no_grad():
            return self.model(inputs).double().numpy()  # (n,)

    def user_vectors(self, user_ids: np.ndarray) -> np.ndarray:
        """Centred user vectors of unit mean norm, as the cohorts are fitted on (`personalized_user_vectors`)."""
        from icg_rec.alignment.data import personalized_user_vectors

        users = np.where(np.isin(user_ids, self.user_ids), user_ids, -1)
        return personalized_user_vectors(self.model, users).numpy()  # (n, dim)


def build_cover_arms(
    train: pl.DataFrame,
    test: pl.DataFrame,
    original: ItemCovers,
    refreshed: CohortCovers,
    user_cohorts: pl.DataFrame,
    embed: Callable[[torch.Tensor], np.ndarray],
    config: CoverArmsConfig | None = None,
    fit_scorer: Callable[[pl.DataFrame], CoverScorer] | None = None,
    base: FeatureSpec | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, FeatureSpec]]:
    """Adds the feature columns of the three arms and returns the arms' FeatureSpecs.

    Columns added: `cohort_id` (the row user's cohort: out-of-fold on train by default), the id statistics of `build_lift_frames`,
    `original_cover` and `personalized_cover` (PCA of the cover embeddings), and with `fit_scorer`
    `original_cover_score` and `personalized_cover_score` (out-of-fold on train).

    Args:
        train: training interactions (user_id, item_id, label, timestamp).
        test: test interactions.
        original: the original cover of every item of train and test.
        refreshed: the cover of every (item, cohort) that a row of train or test shows.
        user_cohorts: user_id, cohort_id of every user of train and test.
        embed: covers (n, 3, H, W) -> (n, d) image embeddings.
        config: PCA width, folds, seeds.
        fit_scorer: rows -> a CoverScorer fitted on them; None: no reward-score columns. Out-of-fold cohorts
            (the default) need FoldScorers (`reward_model_scorer`).
        base: the `no_cover` arm (default: user and item ids + their click rates and counts); the cover
            arms extend it.

    Returns:
        (train, test, arms) with arms `no_cover`, `original_cover`, `personalized_cover` in this order.
    """
    config = config or CoverArmsConfig()
    if config.cohorts not in COHORT_SOURCES:
        raise ValueError(f"CoverArmsConfig.cohorts must be one of {COHORT_SOURCES}, got {config.cohorts!r}")
    base = base or FeatureSpec(sparse=["user_id", "item_id"], dense=RATES)
    train = _with_cohorts(train, user_cohorts, "train")
    test = _with_cohorts(test, user_cohorts, "test")
    train, test = build_lift_frames(train, test, [], n_folds=config.n_folds, seed=config.seed)
    folds = fold_ids(len(train), config.n_folds, config.seed)
    scorers = (
        [fit_scorer(train.filter(pl.Series(folds != k))) for k in range(config.n_folds)] if fit_scorer else []
    )
    if config.cohorts == "out_of_fold":
        if not scorers or not all(hasattr(s, "user_vectors") for s in scorers):
            raise ValueError(
                "out-of-fold cohorts are refitted from the fold scorers' user vectors: pass a fit_scorer whose "
                "scorers have user_vectors (reward_model_scorer), or set cohorts='given' for cohorts fitted on "
                "an earlier period than the training rows"
            )
        train = train.with_columns(
            cohort_id=pl.Series(_oof_cohorts(train, folds, scorers, user_cohorts, config))
        )
    item_keys = _keys(original.item_ids)
    pair_keys = _keys(refreshed.item_ids, refreshed.cohort_ids)
    rows = {  # per arm, (train, test) index of each row's cover
        ORIGINAL: [_shown_rows(f, item_keys, pair_keys) for f in (train, test)],
        PERSONALIZED: [_cover_rows(f, pair_keys, "refreshed covers") for f in (train, test)],
    }
    vectors = _shared_pca(
        [embed(original.images), embed(refreshed.images)],
        [original.item_ids, refreshed.item_ids],
        np.unique(train["item_id"].to_numpy()),
        config,
    )
    # the shown-cover arm indexes the originals, then (with a cover_id column) the refreshed covers after them
    covers = {ORIGINAL: torch.cat([original.images, refreshed.images]), PERSONALIZED: refreshed.images}
    vectors = [np.concatenate(vectors), vectors[1]]
    for name, reduced in zip((ORIGINAL, PERSONALIZED), vectors, strict=True):
        width = pl.Array(pl.Float32, reduced.shape[1])
        train = train.with_columns(pl.Series(name, reduced[rows[name][0]], dtype=width))  # (n_train, pca_dim)
        test = test.with_columns(pl.Series(name, reduced[rows[name][1]], dtype=width))  # (n_test, pca_dim)
    scored = []
    if scorers:
        train, test = _add_scores(train, test, covers, rows, scorers, folds, config)
        scored = [f"{ORIGINAL}_score", f"{PERSONALIZED}_score"]
    arms = {NO_COVER: base}
    for name, score in zip((ORIGINAL, PERSONALIZED), scored or [None, None], strict=True):
        arms[name] = FeatureSpec(
            sparse=base.sparse,
            dense=base.dense + ([score] if score else []),
            embeddings=[*base.embeddings, name],
            label=base.label,
        )
    return train, test, arms


def run_cover_arms(
    train: pl.DataFrame,
    test: pl.DataFrame,
    original: ItemCovers,
    refreshed: CohortCovers,
    user_cohorts: pl.DataFrame,
    embed: Callable[[torch.Tensor], np.ndarray],
    make_ranker: Callable[[], Ranker],
    config: CoverArmsConfig | None = None,
    fit_scorer: Callable[[pl.DataFrame], CoverScorer] | None = None,
    base: FeatureSpec | None = None,
    progress: bool = True,
) -> LiftResult:
    """Trains the same ranker on the three arms and compares each cover arm with `no_cover`.

    Args:
        train, test, original, refreshed, user_cohorts, embed, fit_scorer, base: as in `build_cover_arms`.
        make_ranker: builds a fresh, unfitted ranker (the same settings for every arm).
        config: PCA width, folds, seeds; `config.lift.baseline` must be "no_cover".
        progress: show a tqdm bar over (seed, arm) runs.

    Returns:
        Per-arm AUC / gAUC / logloss, and RelaImpr, AUC delta and its bootstrap 95% CI per cover arm.
    """
    config = config or CoverArmsConfig()
    if config.lift.baseline != NO_COVER:
        raise ValueError(
            f"the cover arms compare with {NO_COVER!r}; got lift.baseline={config.lift.baseline!r}"
        )
    train, test, arms = build_cover_arms(
        train, test, original, refreshed, user_cohorts, embed, config, fit_scorer, base
    )
    return run_lift(train, test, arms, make_ranker, config.lift, progress=progress)


def _with_cohorts(frame: pl.DataFrame, user_cohorts: pl.DataFrame, what: str) -> pl.DataFrame:
    if missing := {"user_id", "cohort_id"} - set(user_cohorts.columns):
        raise SchemaError(f"user_cohorts is missing column(s) {sorted(missing)}; expected user_id, cohort_id")
    if (dup := user_cohorts.filter(pl.col("user_id").is_duplicated())).height:
        raise SchemaError(f"user_cohorts maps a user to several cohorts, e.g. {dup.head(4).rows()}")
    if "cohort_id" in frame.columns:
        raise SchemaError(f"{what} already has a cohort_id column; the cover arms take it from user_cohorts")
    mapping = user_cohorts.select(pl.col("user_id").cast(pl.Int64), pl.col("cohort_id").cast(pl.Int64))
    joined = frame.join(mapping, on="user_id", how="left", maintain_order="left")
    if unknown := sorted(set(joined.filter(pl.col("cohort_id").is_null())["user_id"].to_list())):
        raise UnknownIdError(
            f"{len(unknown)} user id(s) of {what} have no cohort in user_cohorts, e.g. {unknown[:5]}"
        )
    return joined


def _keys(item_ids: np.ndarray, cohort_ids: np.ndarray | None = None) -> pl.DataFrame:
    keys = {"item_id": np.asarray(item_ids, dtype=np.int64)}
    if cohort_ids is not None:
        keys["cohort_id"] = np.asarray(cohort_ids, dtype=np.int64)
    frame = pl.DataFrame(keys)
    if (dup := frame.filter(frame.is_duplicated())).height:
        raise SchemaError(f"covers hold duplicate key(s) {list(keys)}, e.g. {dup.head(3).rows()}")
    return frame.with_row_index("cover_row")


def _cover_rows(frame: pl.DataFrame, keys: pl.DataFrame, what: str) -> np.ndarray:
    """(n_rows,) index into the covers of each row's key; a key without a cover raises, naming it."""
    on = [c for c in keys.columns if c != "cover_row"]
    found = frame.select(pl.col(on).cast(pl.Int64)).join(keys, on=on, how="left", maintain_order="left")
    if (missing := found.filter(pl.col("cover_row").is_null()).unique(maintain_order=True)).height:
        raise UnknownIdError(
            f"{what} lack {missing.height} {tuple(on)} key(s) that rows need, e.g. {missing.select(on).head(5).rows()}"
        )
    return found["cover_row"].to_numpy().astype(np.int64)


def _shown_rows(frame: pl.DataFrame, item_keys: pl.DataFrame, pair_keys: pl.DataFrame) -> np.ndarray:
    """Index of the cover each row showed: its original, or with a cover_id column the logged cover.

    Cover ids follow icg_rec.ope.covers: 0 the original, 1 the generic cover (refreshed cohort -1), 2 + c the
    cover refreshed for cohort c; refreshed covers are indexed after the originals.
    """
    original = _cover_rows(frame, item_keys, "original covers")
    if "cover_id" not in frame.columns:
        return original
    shown = frame.select("item_id", cohort_id=pl.col("cover_id") - 2)  # 1 -> -1 (generic), 2 + c -> c
    generated = shown["cohort_id"].to_numpy() >= -1
    out = original.copy()
    if generated.any():
        rows = _cover_rows(
            shown.filter(pl.Series(generated)), pair_keys, "refreshed covers (logged cover_id)"
        )
        out[generated] = item_keys.height + rows
    return out


def _shared_pca(
    vectors: list[np.ndarray], item_ids: list[np.ndarray], train_items: np.ndarray, config: CoverArmsConfig
) -> list[np.ndarray]:
    """One PCA over every kind of cover, fitted on the training items' covers; per kind (n, pca_dim)."""
    stacked = np.concatenate([np.asarray(v, dtype=np.float32) for v in vectors])  # (n_all, d)
    reduced = pca_item_vectors(
        np.concatenate(item_ids), stacked, train_items, config.pca_dim, seed=config.seed
    )
    return np.split(reduced, np.cumsum([len(v) for v in vectors])[:-1])


def _oof_cohorts(
    train: pl.DataFrame,
    folds: np.ndarray,
    scorers: list[FoldScorer],
    user_cohorts: pl.DataFrame,
    config: CoverArmsConfig,
) -> np.ndarray:
    """(n_train,) cohort of each training row's user, refitted from the scorer of the folds it is not in."""
    given = dict(
        user_cohorts.select(pl.col("user_id").cast(pl.Int64), pl.col("cohort_id").cast(pl.Int64)).iter_rows()
    )
    names = np.unique(np.fromiter(given.values(), dtype=np.int64))  # the given cohort ids
    users = train["user_id"].to_numpy()
    out = np.empty(len(train), dtype=np.int64)
    for k, scorer in enumerate(scorers):
        known = np.asarray(scorer.user_ids, dtype=np.int64)
        fitted = UserCohorts(CohortConfig(n_cohorts=len(names), seed=config.seed)).fit(
            known, scorer.user_vectors(known)
        )
        given_rows = np.searchsorted(names, [given[u] for u in fitted.user_ids_.tolist()])
        overlap = np.zeros((len(names), len(names)))
        np.add.at(overlap, (fitted.labels_, given_rows), 1.0)  # (fold cohort, given cohort) shared users
        fold_label, given_label = linear_sum_assignment(-overlap)
        rename = np.empty(len(names), dtype=np.int64)
        rename[fold_label] = names[given_label]
        held = np.flatnonzero(folds == k)
        out[held] = rename[fitted.predict(scorer.user_vectors(users[held]))]
    return out


def _add_scores(
    train: pl.DataFrame,
    test: pl.DataFrame,
    covers: dict[str, torch.Tensor],
    rows: dict[str, list[np.ndarray]],
    scorers: list[CoverScorer],
    folds: np.ndarray,
    config: CoverArmsConfig,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`{arm}_score` per cover arm: out-of-fold on train, the mean of the K fold scorers on test."""
    train_scores = {name: np.empty(len(train)) for name in covers}
    test_scores = {name: np.zeros(len(test)) for name in covers}
    for k, scorer in enumerate(scorers):
        held = np.flatnonzero(folds == k)
        for name, images in covers.items():
            train_scores[name][held] = _score(scorer, train[held], images, rows[name][0][held])
            test_scores[name] += _score(scorer, test, images, rows[name][1]) / config.n_folds
    train = train.with_columns([pl.Series(f"{n}_score", s) for n, s in train_scores.items()])
    test = test.with_columns([pl.Series(f"{n}_score", s) for n, s in test_scores.items()])
    return train, test


def _score(
    scorer: CoverScorer, frame: pl.DataFrame, images: torch.Tensor, cover_rows: np.ndarray
) -> np.ndarray:
    users, items = frame["user_id"].to_numpy(), frame["item_id"].to_numpy()
    out = [
        scorer(
            users[s : s + SCORE_CHUNK], items[s : s + SCORE_CHUNK], images[cover_rows[s : s + SCORE_CHUNK]]
        )
        for s in range(0, len(frame), SCORE_CHUNK)
    ]
    return np.concatenate(out) if out else np.zeros(0)
