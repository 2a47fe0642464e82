"""The pipeline's `ope` stage: off-policy evaluation of cover policies, when the log allows it.

The stage runs when the interactions log has `cover_id` and `propensity` columns (a log of randomized
cover exposure); otherwise the pipeline records it as skipped with `skip_reason(log)`. Its body is
`ope_stage(config, log, candidates, folder, user_cohorts, reward)`: the pipeline's stage function calls
it with what its upstream stages hold (the prepared log, the candidate covers built from the items'
originals and the refresh folder by `icg_rec.ope.covers.candidates_from_refresh`, the cohorts'
user -> cohort frame and the personalized reward model), and it writes `ope.json` + `report.md` into
the stage folder. `OPEOutput(folder).report()` reads ope.json back, verified against stage.json.
"""

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from icg_rec.ope.estimators import ESTIMATORS
from icg_rec.ope.evaluate import OPEConfig, evaluate_policies, write_ope_report
from icg_rec.ope.outcome import OutcomeConfig
from icg_rec.ope.policies import CoverCandidates, parse_policy
from icg_rec.pipeline.stage import StageOutput
from icg_rec.rewards.personalized import PersonalizedRewardModel


@dataclass
class OPEStageConfig:
    policies: list[str] = field(
        default_factory=lambda: ["original", "generic", "own_cohort", "reward_greedy"]
    )  # target policy specs (icg_rec.ope.policies)
    estimators: list[str] = field(default_factory=lambda: list(ESTIMATORS))  # among ESTIMATORS
    clip: float = 10.0  # weight threshold of dr_clipped and switch_dr
    n_boot: int = 1000  # user-level bootstrap replicates per interval
    outcome_folds: int = 2  # cross-fitting folds of the outcome model
    outcome_epochs: int = 3  # reward-model passes per outcome fit
    seed: int = 0  # seeds the bootstrap and the outcome model


@dataclass(frozen=True)
class OPEOutput(StageOutput):
    """The ope stage's folder: ope.json and report.md."""

    def report(self) -> dict:
        """ope.json, verified against stage.json."""
        return self.read_json("ope.json")


def skip_reason(log: pl.DataFrame) -> str | None:
    """Why the ope stage cannot run on this log (None: it can)."""
    if missing := [c for c in ("cover_id", "propensity") if c not in log.columns]:
        return (
            f"the interactions log has no {' / '.join(missing)} column: off-policy evaluation needs which cover "
            "each impression showed and the probability the logging policy had of showing it"
        )
    return None


def ope_stage(
    config: OPEStageConfig,
    log: pl.DataFrame,
    candidates: CoverCandidates,
    folder: str | Path,
    user_cohorts: pl.DataFrame | None = None,
    reward: PersonalizedRewardModel | None = None,
) -> OPEOutput:
    """Evaluates the configured target policies on the log and writes the report into `folder`.

    Args:
        config: policies, estimators and their settings.
        log: the prepared interactions with cover_id and propensity.
        candidates: every item's candidate covers, with pixels.
        folder: the stage folder.
        user_cohorts: user_id, cohort_id (own_cohort needs it).
        reward: the fitted personalized reward model (reward_greedy / softmax need it).

    Returns:
        The stage's output.
    """
    ope_config = OPEConfig(
        estimators=list(config.estimators),
        clip=config.clip,
        n_boot=config.n_boot,
        seed=config.seed,
        outcome=OutcomeConfig(n_folds=config.outcome_folds, epochs=config.outcome_epochs, seed=config.seed),
    )
    policies = [parse_policy(spec) for spec in config.policies]
    report = evaluate_policies(log, candidates, policies, ope_config, user_cohorts, reward)
    write_ope_report(report, folder, {"policies": config.policies})
    return OPEOutput(Path(folder))
