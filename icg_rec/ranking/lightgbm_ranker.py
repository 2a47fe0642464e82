"""A LightGBM p(click) ranker behind the `Ranker` protocol: the first arm-runner of lift experiments.

Id columns (`spec.sparse`) become LightGBM categorical features. Each column gets a vocabulary of
the ids seen in training (id -> code 0..n-1), so arbitrary Int64 ids are safe. An id never seen in
training (a cold item, a new user) is encoded as missing: LightGBM sends it down the branch of
"categories outside the split's set", the same branch as a rare id, so it gets a population-level
prediction rather than an error. `unknown_id_counts(frame)` says how many rows that concerns.
Embedding columns (`pl.Array(Float32, d)`) are expanded to d float columns `{name}_{j}`; dense
columns may hold NaN, which LightGBM treats as missing.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from icg_rec.errors import CheckpointError, SchemaError
from icg_rec.io import config_from_dict, read_json, verify_folder, write_folder, write_json
from icg_rec.ranking.base import FeatureSpec
from icg_rec.validation import check_columns, lookup


@dataclass
class LightGBMConfig:
    n_estimators: int = 300  # boosting rounds (the most; early stopping may use fewer)
    learning_rate: float = 0.1  # shrinkage per round
    num_leaves: int = 31  # leaves per tree
    min_child_samples: int = 50  # rows a leaf needs at least
    feature_fraction: float = 0.8  # features sampled per tree (seeded)
    bagging_fraction: float = 0.8  # rows sampled per round (seeded)
    lambda_l2: float = 1.0  # L2 penalty on leaf values
    max_cat_threshold: int = 64  # most id values one categorical split may send left
    cat_smooth: float = 20.0  # pulls per-id gradient statistics towards the mean (rare ids)
    min_data_per_group: int = 50  # rows an id group needs to be split on its own
    early_stopping_rounds: int = 30  # stop when the valid logloss has not improved for this many rounds
    num_threads: int = 1  # fixed; more threads were ~15x slower on a busy 2-core box (OpenMP spin-waits)


class LightGBMRanker:
    """Gradient-boosted trees on id, dense and embedding columns; predicts p(click)."""

    def __init__(self, config: LightGBMConfig | None = None) -> None:
        self.config = config

    def fit(
        self, train: pl.DataFrame, spec: FeatureSpec, valid: pl.DataFrame | None = None, seed: int = 0
    ) -> "LightGBMRanker":
        """Trains on `train`, early-stopping on `valid` (if given).

        Args:
            train: frame holding every column named by `spec` (and the label).
            spec: which columns are ids, dense floats, embedding vectors and the label.
            valid: optional frame with the same columns, used only for early stopping.
            seed: seeds row/feature sampling; same seed and data give the same model.

        Returns:
            self, with `booster_`, `spec_`, `vocab_`, `embedding_widths_`, `feature_names_` and
            `best_iteration_` set.
        """
        config = self.config or LightGBMConfig()
        labels = _labels(train, spec, "train")
        self.spec_ = spec
        self.vocab_ = {col: _sorted_unique(train, col) for col in spec.sparse}
        self.embedding_widths_ = {col: _embedding_width(train, col) for col in spec.embeddings}
        self.feature_names_ = spec.sparse + spec.dense
        for col, width in self.embedding_widths_.items():
            self.feature_names_ += [f"{col}_{j}" for j in range(width)]
        params = {
            "objective": "binary",
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_child_samples": config.min_child_samples,
            "feature_fraction": config.feature_fraction,
            "bagging_fraction": config.bagging_fraction,
            "bagging_freq": 1 if config.bagging_fraction < 1.0 else 0,
            "lambda_l2": config.lambda_l2,
            "max_cat_threshold": config.max_cat_threshold,
            "cat_smooth": config.cat_smooth,
            "min_data_per_group": config.min_data_per_group,
            "num_threads": config.num_threads,
            "deterministic": True,
            "force_col_wise": True,
            "seed": seed,
            "verbosity": -1,
        }
        data = lgb.Dataset(
            self._matrix(train, "train"),
            label=labels,
            feature_name=self.feature_names_,
            categorical_feature=list(range(len(spec.sparse))),
            free_raw_data=True,
        )
        valid_sets, callbacks = [], []
        if valid is not None:
            valid_labels = _labels(valid, spec, "valid")
            valid_sets = [lgb.Dataset(self._matrix(valid, "valid"), label=valid_labels, reference=data)]
            callbacks = [lgb.early_stopping(config.early_stopping_rounds, verbose=False)]
        self.booster_ = lgb.train(
            params, data, num_boost_round=config.n_estimators, valid_sets=valid_sets, callbacks=callbacks
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        return self

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Returns p(click) as float64 of shape (n_rows,); unseen ids count as missing (module doc)."""
        x = self._matrix(frame, "frame")
        return np.asarray(self.booster_.predict(x, num_iteration=self.best_iteration_), dtype=np.float64)

    def unknown_id_counts(self, frame: pl.DataFrame) -> dict[str, int]:
        """Rows per id column whose id was never seen in training (predicted as missing)."""
        check_columns(frame, self.spec_.sparse, "frame")
        return {col: int((~frame[col].is_in(self.vocab_[col].tolist())).sum()) for col in self.spec_.sparse}

    def save(self, folder: str | Path) -> Path:
        """Writes `model.txt` (LightGBM text) and `ranker.json` (config, spec, vocabularies), as a set."""
        folder = Path(folder)
        write_folder(folder, self._write)
        return folder

    def _write(self, folder: Path) -> None:
        text = self.booster_.model_to_string(num_iteration=self.best_iteration_)
        (folder / "model.txt").write_text(text)
        write_json(
            folder / "ranker.json",
            {
                "config": asdict(self.config or LightGBMConfig()),
                "spec": asdict(self.spec_),
                "vocab": {col: ids.tolist() for col, ids in self.vocab_.items()},
                "embedding_widths": self.embedding_widths_,
                "feature_names": self.feature_names_,
                "best_iteration": self.best_iteration_,
            },
        )

    @classmethod
    def load(cls, folder: str | Path) -> "LightGBMRanker":
        """Reads a folder written by `save`; raises CheckpointError naming the file if it is unusable.

        Every file is checked against the folder's MANIFEST.json first: LightGBM is never handed a
        truncated or altered model.txt (it aborts the interpreter on some).
        """
        folder = Path(folder)
        verify_folder(folder, required=["ranker.json", "model.txt"])
        meta = read_json(folder / "ranker.json")
        model_path = folder / "model.txt"
        try:
            booster = lgb.Booster(model_str=model_path.read_text())
        except lgb.basic.LightGBMError as err:
            raise CheckpointError(f"{model_path} is not a readable LightGBM model: {err}") from err
        ranker = cls(config_from_dict(LightGBMConfig, meta["config"], source=str(folder / "ranker.json")))
        ranker.spec_ = config_from_dict(FeatureSpec, meta["spec"], source=str(folder / "ranker.json"))
        ranker.vocab_ = {col: np.asarray(ids, dtype=np.int64) for col, ids in meta["vocab"].items()}
        ranker.embedding_widths_ = {col: int(w) for col, w in meta["embedding_widths"].items()}
        ranker.feature_names_ = list(meta["feature_names"])
        ranker.best_iteration_ = int(meta["best_iteration"])
        ranker.booster_ = booster
        if booster.feature_name() != ranker.feature_names_:
            raise CheckpointError(f"{model_path} features do not match {folder / 'ranker.json'}")
        return ranker

    def _matrix(self, frame: pl.DataFrame, what: str) -> np.ndarray:
        """(n_rows, n_features) float64: id codes (NaN = unseen), dense values, expanded embeddings."""
        spec = self.spec_
        check_columns(frame, spec.sparse + spec.dense + spec.embeddings, what)
        blocks = []
        for col in spec.sparse:
            if frame[col].null_count():
                raise SchemaError(f"{what} id column {col!r} has {frame[col].null_count()} null value(s)")
            ids = frame[col].to_numpy().astype(np.int64)
            vocab = self.vocab_[col]
            pos, known = lookup(vocab, ids)
            codes = np.where(known, pos, np.nan)  # unseen id -> missing
            blocks.append(codes[:, None])
        for col in spec.dense:
            blocks.append(frame[col].cast(pl.Float64).fill_null(np.nan).to_numpy()[:, None])
        for col, width in self.embedding_widths_.items():
            if (got := _embedding_width(frame, col, what)) != width:
                raise SchemaError(
                    f"{what} embedding column {col!r} has width {got}; the model was trained on {width}"
                )
            if frame[col].null_count():
                raise SchemaError(
                    f"{what} embedding column {col!r} has {frame[col].null_count()} null row(s)"
                )
            blocks.append(frame[col].to_numpy().astype(np.float64).reshape(len(frame), width))
        if not blocks:
            raise SchemaError(
                "the FeatureSpec names no feature columns (sparse, dense and embeddings are empty)"
            )
        return np.hstack(blocks)


def _labels(frame: pl.DataFrame, spec: FeatureSpec, what: str) -> np.ndarray:
    check_columns(frame, [spec.label], what)
    labels = frame[spec.label].cast(pl.Float64).to_numpy()
    if n_bad := int(np.isnan(labels).sum()):
        raise SchemaError(
            f"{what} label column {spec.label!r} has {n_bad} null/NaN value(s); expected 0.0 or 1.0"
        )
    if n_bad := int(((labels != 0.0) & (labels != 1.0)).sum()):
        raise SchemaError(f"{what} label column {spec.label!r} has {n_bad} value(s) other than 0.0/1.0")
    return labels


def _sorted_unique(frame: pl.DataFrame, col: str) -> np.ndarray:
    check_columns(frame, [col], "train")
    if isinstance(frame.schema[col], pl.List):
        raise SchemaError(
            f"train id column {col!r} holds a list of ids per row; LightGBM reads one id per row: use "
            "TorchRecRanker for list columns, or turn the list into dense columns (its length, a taste cosine)"
        )
    return np.unique(frame[col].drop_nulls().to_numpy().astype(np.int64))


def _embedding_width(frame: pl.DataFrame, col: str, what: str = "train") -> int:
    check_columns(frame, [col], what)
    dtype = frame.schema[col]
    if not isinstance(dtype, pl.Array):
        raise SchemaError(f"{what} embedding column {col!r} is {dtype}; expected pl.Array(Float32, d)")
    return int(dtype.size)
