"""Stage `rewards`: the personalized reward model fitted on the training clicks, the relevance projection
when the alignment weights it, and the reward model's test metrics against popularity and id-only MF."""

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from icg_rec.io import read_json, write_json
from icg_rec.pipeline.encode import Encoded
from icg_rec.pipeline.prepare import Prepared
from icg_rec.pipeline.stage import StageOutput
from icg_rec.rewards.personalized import PersonalizedConfig
from icg_rec.rewards.relevance import RelevanceConfig

REWARDS = ("aesthetic", "relevance", "personalized")


@dataclass
class RewardsConfig:
    personalized: PersonalizedConfig = field(
        default_factory=lambda: PersonalizedConfig(cover_tower="cnn", epochs=6)
    )  # the cnn tower's image_size is the encode stage's cover size
    relevance: RelevanceConfig = field(
        default_factory=lambda: RelevanceConfig(shared_dim=32, epochs=60, batch_size=64)
    )  # title-cover projection, fitted only when weighted
    weights: dict[str, float] = field(
        default_factory=lambda: {"aesthetic": 0.5, "relevance": 1.0, "personalized": 2.0}
    )  # the alignment's reward weights (aesthetic, relevance, personalized); 0 or absent = not used
    n_boot: int = 1000  # user-level bootstrap resamples of the gAUC differences to the baselines
    seed: int = 0  # seeds every fit (set from the run's seed)


@dataclass(frozen=True)
class Rewards(StageOutput):
    """personalized/ (+ relevance/), rewards.json (weights, user width) and metrics.json."""

    def personalized(self, image_encoder=None, device: str = "cpu"):
        """The fitted PersonalizedRewardModel on `device`, frozen (an "embedding" tower needs the image encoder)."""
        from icg_rec.rewards.personalized import PersonalizedRewardModel

        return PersonalizedRewardModel.load(self.path("personalized"), image_encoder, device=device).freeze()

    def relevance(self, device: str = "cpu"):
        """The fitted RelevanceModel on `device`, frozen, or None when the alignment does not weight relevance."""
        from icg_rec.rewards.relevance import RelevanceModel

        if not self.weights().get("relevance"):
            return None
        return RelevanceModel.load(self.path("relevance"), device=device).freeze()

    def weights(self) -> dict[str, float]:
        """The reward weights of the alignment."""
        return self.read_json("rewards.json")["weights"]

    def user_dim(self) -> int:
        """Width of the reward model's user vectors: the generator's user embedding width."""
        return int(read_json(self.path("personalized/config.json"))["config"]["dim"])

    def metrics(self) -> dict:
        """Test metrics of the personalized model and of the baselines."""
        return self.read_json("metrics.json")


def cover_features(config: PersonalizedConfig, encoded: Encoded):
    """What the reward model's cover tower reads: pixels (cnn) or the image embeddings (embedding)."""
    from icg_rec.rewards.personalized import CoverInputs

    tensors = encoded.tensors()
    covers = tensors["pixels"] if config.cover_tower == "cnn" else tensors["image"]
    return CoverInputs(tensors["item_ids"].numpy(), covers.numpy())


def train_rewards(
    config: RewardsConfig, prepared: Prepared, encoded: Encoded, folder: Path, device: str = "cpu"
) -> Rewards:
    """Fits the weighted rewards on the training rows and scores the test rows.

    Args:
        config: reward settings and weights.
        prepared: train and test rows.
        encoded: cover pixels and embeddings.
        folder: the stage folder.
        device: where the models train and score.

    Returns:
        The fitted rewards.
    """
    from icg_rec.rewards.base import GENERIC_USER
    from icg_rec.rewards.personalized import PersonalizedRewardModel
    from icg_rec.rewards.relevance import RelevanceModel

    if unknown := sorted(set(config.weights) - set(REWARDS)):
        raise ValueError(f"rewards.weights has unknown reward(s) {unknown}; known: {list(REWARDS)}")
    if not config.weights.get("personalized"):
        raise ValueError("rewards.weights must weight 'personalized': covers are personalized by it")
    seed = config.seed
    tensors = encoded.tensors()
    personal_config = config.personalized
    if personal_config.cover_tower == "cnn":
        personal_config = replace(personal_config, image_size=int(tensors["pixels"].shape[-1]))
    covers = cover_features(personal_config, encoded)
    train, test = prepared.train(), prepared.test()
    model = PersonalizedRewardModel(personal_config, encoded.image_encoder().to(device), device=device).fit(
        train, covers, seed=seed
    )
    model.save(folder / "personalized")
    if config.weights.get("relevance"):
        relevance = RelevanceModel(config.relevance, device=device)
        # the titles alone: the relevance reward scores generated covers against their titles
        relevance.fit(tensors["titles"].numpy(), tensors["image"].numpy(), seed=seed).save(
            folder / "relevance"
        )
    known = test.with_columns(
        user_id=pl.when(pl.col("user_id").is_in(model.user_ids_.tolist()))
        .then("user_id")
        .otherwise(GENERIC_USER)
    )
    predictions = {"personalized": model.predict(known, covers), **baseline_predictions(train, test, seed)}
    metrics = reward_metrics(test, predictions, n_boot=config.n_boot, seed=seed)
    metrics["test_rows_of_unknown_users"] = int((known["user_id"] == GENERIC_USER).sum())
    write_json(folder / "metrics.json", metrics)
    write_json(folder / "rewards.json", {"weights": config.weights, "personalized": asdict(personal_config)})
    return Rewards(folder)


def baseline_predictions(train: pl.DataFrame, test: pl.DataFrame, seed: int = 0) -> dict[str, np.ndarray]:
    """Test predictions of the popularity and the id-only matrix-factorization baselines, fitted on train."""
    from icg_rec.rewards.baselines import MatrixFactorizationBaseline, PopularityBaseline

    return {
        "popularity": PopularityBaseline().fit(train).predict(test),
        "id_mf": MatrixFactorizationBaseline().fit(train, seed=seed).predict(test),
    }


def scores(test: pl.DataFrame, p: np.ndarray) -> dict[str, float]:
    """AUC, gAUC (by user), log loss and ECE of probabilities `p` on the test rows."""
    from icg_rec.metrics import auc, ece, gauc, logloss

    y = test["label"].to_numpy()
    g = gauc(y, p, test["user_id"].to_numpy())
    return {
        "auc": auc(y, p),
        "gauc": g.value,
        "gauc_users": g.n_groups,
        "logloss": logloss(y, p),
        "ece": ece(y, p),
    }


def reward_metrics(
    test: pl.DataFrame,
    predictions: dict[str, np.ndarray],
    model: str = "personalized",
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Scores of `predictions[model]` and of every other predictor, and the model's gAUC minus each other's.

    Args:
        test: the test rows (user_id, label).
        predictions: predictor name -> (n_test,) probabilities; must hold `model`.
        model: the predictor the others are compared with.
        n_boot: user-level paired bootstrap resamples of each gAUC difference.
        seed: seeds the bootstrap.

    Returns:
        The model's `scores`, plus "baselines" (name -> scores) and "gauc_minus_baseline"
        (name -> {"delta", "ci95", "p_value"}).
    """
    from icg_rec.metrics.stats import paired_bootstrap

    y, users = test["label"].to_numpy(), test["user_id"].to_numpy()
    others = [name for name in predictions if name != model]
    block: dict = {**scores(test, predictions[model])}
    block["baselines"] = {name: scores(test, predictions[name]) for name in others}
    block["gauc_minus_baseline"] = {}
    for name in others:
        boot = paired_bootstrap(
            y, predictions[name], predictions[model], users, "gauc", n_boot=n_boot, seed=seed
        )
        block["gauc_minus_baseline"][name] = {
            "delta": boot.delta,
            "ci95": list(boot.ci95),
            "p_value": boot.p_value,
        }
    return block
