"""A/B preparation: salted bucketing, power and sample size, CUPED, SRM, the plan and its spec.

Importing the package is light: each name imports its submodule (and torch, torchrec, ...) on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.experiment.assignment import Experiment, Layer, assign, assign_buckets
    from icg_rec.experiment.plan import ABPlan, ABPlanConfig, plan_ab, write_plan
    from icg_rec.experiment.power import (
        duration_days,
        minimum_detectable_lift,
        sample_size_ratio_metric,
        sample_size_two_proportions,
    )
    from icg_rec.experiment.variance import SRMResult, cuped_adjust, cuped_theta, srm_check

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "assignment": ["Experiment", "Layer", "assign", "assign_buckets"],
        "plan": ["ABPlan", "ABPlanConfig", "plan_ab", "write_plan"],
        "power": [
            "duration_days",
            "minimum_detectable_lift",
            "sample_size_ratio_metric",
            "sample_size_two_proportions",
        ],
        "variance": ["SRMResult", "cuped_adjust", "cuped_theta", "srm_check"],
    },
)
