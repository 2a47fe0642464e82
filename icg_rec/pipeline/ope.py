"""Stage `ope`: off-policy evaluation of cover policies on the test rows of a cover-aware log.

It runs when the log has `cover_id` and `propensity` (randomized cover exposure, see `icg_rec.ope`);
otherwise the run records it as skipped with `icg_rec.ope.stage.skip_reason`. The candidates are each
item's original cover (cover id 0), its generic cover (1) and its per-cohort covers (2 + cohort) of the
refresh stage, the policies' cohorts those of the cohorts stage, and `reward_greedy` scores with the
reward model fitted on the training rows, so the estimates use rows no model was fitted on.
"""

from pathlib import Path

from icg_rec.pipeline.cohorts import Cohorts
from icg_rec.pipeline.encode import Encoded
from icg_rec.pipeline.prepare import Prepared
from icg_rec.pipeline.refresh import Refreshed
from icg_rec.pipeline.rewards import Rewards


def ope(
    config,
    prepared: Prepared,
    encoded: Encoded,
    rewards: Rewards,
    cohorts: Cohorts,
    refreshed: Refreshed,
    folder: Path,
    device: str = "cpu",
):
    """Evaluates the configured cover policies (`icg_rec.ope.stage.ope_stage`) on the test rows.

    Args:
        config: an OPEStageConfig (policies, estimators, bootstrap, outcome model).
        prepared: the test rows (with cover_id and propensity).
        encoded: the original covers' pixels.
        rewards: the reward model (reward-driven policies).
        cohorts: each user's cohort (own_cohort).
        refreshed: the generated candidate covers.
        folder: the stage folder.
        device: where the reward model scores.

    Returns:
        The OPEOutput.
    """
    from icg_rec.ope.covers import candidates_from_refresh
    from icg_rec.ope.stage import ope_stage

    tensors = encoded.tensors()
    manifest = refreshed.path("manifest.parquet")  # the stage's own; each cover is checked against it
    candidates = candidates_from_refresh(tensors["item_ids"].numpy(), tensors["pixels"], manifest.parent)
    reward = rewards.personalized(encoded.image_encoder().to(device), device)
    return ope_stage(config, prepared.test(), candidates, folder, cohorts.user_cohorts(), reward)
