"""Stage `lift`: the same ranker with no cover features, the original cover, and the user's cohort cover."""

from dataclasses import dataclass, field
from pathlib import Path

from icg_rec.pipeline.cohorts import Cohorts
from icg_rec.pipeline.encode import Encoded
from icg_rec.pipeline.prepare import Prepared
from icg_rec.pipeline.refresh import Refreshed
from icg_rec.pipeline.rewards import Rewards
from icg_rec.pipeline.stage import StageOutput
from icg_rec.ranking.cover_arms import NO_COVER, CoverArmsConfig
from icg_rec.ranking.lift import LiftConfig


def _cover_arms() -> CoverArmsConfig:
    return CoverArmsConfig(lift=LiftConfig(baseline=NO_COVER, seeds=[0, 1, 2]))


@dataclass
class LiftStageConfig:
    cover_arms: CoverArmsConfig = field(
        default_factory=_cover_arms
    )  # PCA width, folds, ranker seeds, bootstrap
    ranker: str = "lightgbm"  # "lightgbm" or "torchrec" (DLRM), the same settings for every arm
    cohort_arm: bool = False  # also the arm ids + click rates + the user's cohort id (the cohort alone)


@dataclass(frozen=True)
class Lifted(StageOutput):
    """lift.json, report.md and the plots of `write_lift_report`."""

    def summary(self) -> dict:
        """lift.json: per-arm AUC / gAUC / log loss and per cover arm the AUC delta with its 95% CI."""
        return self.read_json("lift.json")


def lift(
    config: LiftStageConfig,
    prepared: Prepared,
    encoded: Encoded,
    rewards: Rewards,
    cohorts: Cohorts,
    refreshed: Refreshed,
    folder: Path,
) -> Lifted:
    """Measures the cover arms on the test rows (icg_rec.ranking.cover_arms) and writes the lift report.

    Each cover enters the ranker as its image embedding (the encode stage's encoder, through one PCA)
    and, with a cnn reward tower, as its out-of-fold personalized reward score for the row's user.

    Args:
        config: arms settings and the ranker.
        prepared: train and test rows.
        encoded: the original covers (pixels) and the image encoder.
        rewards: the reward model's settings (the scorer is refitted per fold on the training rows).
        cohorts: each user's cohort (which refreshed cover a row shows).
        refreshed: the per-cohort covers.
        folder: the stage folder.

    Returns:
        The lift report.
    """
    import numpy as np
    import torch

    from icg_rec.ranking.base import FeatureSpec
    from icg_rec.ranking.cover_arms import ItemCovers, build_cover_arms, reward_model_scorer
    from icg_rec.ranking.harness import ranker_class
    from icg_rec.ranking.lift import run_lift, write_lift_report
    from icg_rec.rewards.personalized import PersonalizedConfig

    make_ranker = ranker_class(config.ranker)
    tensors = encoded.tensors()
    original = ItemCovers(tensors["item_ids"].numpy(), tensors["pixels"])
    encoder = encoded.image_encoder()

    def embed(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return encoder(images).numpy()  # (n, d)

    reward_config = PersonalizedConfig(**rewards.read_json("rewards.json")["personalized"])
    scorer = None
    if reward_config.cover_tower == "cnn":
        scorer = reward_model_scorer(reward_config, original, seed=config.cover_arms.seed)
    train, test = prepared.train(), prepared.test()
    train, test, arms = build_cover_arms(
        train,
        test,
        original,
        refreshed.covers(generic="cover_id" in train.columns),  # a cover-aware log may show generic covers
        cohorts.user_cohorts(),
        embed,
        config.cover_arms,
        fit_scorer=scorer,
    )
    if config.cohort_arm:
        base = arms[NO_COVER]
        cohort = FeatureSpec(sparse=[*base.sparse, "cohort_id"], dense=base.dense, embeddings=base.embeddings)
        arms = {NO_COVER: base, "cohort_id": cohort, **{k: v for k, v in arms.items() if k != NO_COVER}}
    result = run_lift(train, test, arms, make_ranker, config.cover_arms.lift, progress=False)
    split = prepared.record()["config"]["split"]
    meta = {
        "dataset": Path(prepared.folder).parent.name,
        "ranker": config.ranker,
        "protocol": split,
        "seeds": config.cover_arms.lift.seeds,
        "cohorts_source": config.cover_arms.cohorts,
    }
    write_lift_report(result, folder, meta)
    return Lifted(folder)
