"""Stage `ab`: the A/B plan sized on the training log, with each arm's cover manifest."""

from dataclasses import dataclass
from pathlib import Path

from icg_rec.pipeline.prepare import Prepared
from icg_rec.pipeline.refresh import Refreshed
from icg_rec.pipeline.stage import StageOutput


@dataclass(frozen=True)
class Planned(StageOutput):
    """assignment.parquet, covers_<arm>.parquet, spec.json, spec.md (`icg_rec.experiment.plan.write_plan`)."""

    def spec(self) -> dict:
        """spec.json: the sized plan."""
        return self.read_json("spec.json")


def plan(config, prepared: Prepared, refreshed: Refreshed, folder: Path) -> Planned:
    """Assigns the training log's users to arms, sizes the test and writes each arm's covers.

    Args:
        config: an ABPlanConfig.
        prepared: the items (original covers) and the training rows (the pre-period).
        refreshed: the generic and per-cohort covers.
        folder: the stage folder.

    Returns:
        The plan.
    """
    from icg_rec.experiment.commands import arm_cover_manifests
    from icg_rec.experiment.plan import plan_ab, write_plan

    arm_covers = arm_cover_manifests(prepared.items(), refreshed.manifest())
    ab, table = plan_ab(prepared.train(), config)
    write_plan(ab, table, folder, {arm: arm_covers[arm] for arm in config.arms})
    return Planned(folder)
