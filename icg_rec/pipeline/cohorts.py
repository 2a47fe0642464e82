"""Stage `cohorts`: k-means over the reward model's user vectors (the taste the clicks revealed)."""

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from icg_rec.pipeline.encode import Encoded
from icg_rec.pipeline.rewards import Rewards
from icg_rec.pipeline.stage import StageOutput


@dataclass(frozen=True)
class Cohorts(StageOutput):
    """cohorts.json + cohorts.safetensors (UserCohorts.save: `icg-rec refresh --cohorts` reads the
    folder) and user_cohorts.parquet (user_id, cohort_id)."""

    def cohorts(self):
        """The fitted UserCohorts."""
        from icg_rec.cohorts.clustering import UserCohorts

        self.path("cohorts.json")
        self.path("cohorts.safetensors")
        return UserCohorts.load(self.folder)

    def user_cohorts(self) -> pl.DataFrame:
        """user_id, cohort_id of every user of the reward model."""
        return pl.read_parquet(self.path("user_cohorts.parquet"))


def fit_cohorts(config, encoded: Encoded, rewards: Rewards, folder: Path) -> Cohorts:
    """Clusters every user of the reward model by its centred user vector (what the generator reads).

    Args:
        config: a CohortConfig (number of cohorts, k-means settings, seed).
        encoded: the perception encoders (an "embedding" reward tower is loaded with them).
        rewards: the reward model.
        folder: the stage folder.

    Returns:
        The cohorts.
    """
    from icg_rec.alignment import personalized_user_vectors
    from icg_rec.cohorts.clustering import UserCohorts
    from icg_rec.io import atomic_write

    model = rewards.personalized(encoded.image_encoder())
    vectors = personalized_user_vectors(model, model.user_ids_)  # (n_users, dim)
    cohorts = UserCohorts(config).fit(model.user_ids_, vectors.numpy())
    cohorts.save(folder)
    frame = pl.DataFrame({"user_id": cohorts.user_ids_, "cohort_id": cohorts.labels_})
    atomic_write(folder / "user_cohorts.parquet", lambda tmp: frame.write_parquet(tmp))
    return Cohorts(folder)
