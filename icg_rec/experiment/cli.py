"""`icg-rec ab plan`."""

import argparse
from pathlib import Path

EXPECTED_LIFT_RANGE = (0.001, 10.0)  # = icg_rec.experiment.plan.EXPECTED_LIFT_RANGE (not imported: polars)


def register(groups: argparse._SubParsersAction) -> None:
    """Registers the `ab` command group."""
    from icg_rec.argtypes import bounded_float

    ab = groups.add_parser("ab", help="prepare the A/B test").add_subparsers(dest="command", required=True)
    plan = ab.add_parser("plan", help="assignment table, per-arm cover manifests, experiment spec")
    plan.add_argument("--interactions", type=Path, required=True, help="pre-period log (parquet)")
    plan.add_argument(
        "--items", type=Path, required=True, help="items parquet (original covers in image_path)"
    )
    plan.add_argument("--manifest", type=Path, required=True, help="refresh manifest.parquet")
    plan.add_argument(
        "--config", type=Path, default=None, help="TOML with an [ab] table of ABPlanConfig fields"
    )
    plan.add_argument(
        "--expected-lift",
        type=bounded_float(*EXPECTED_LIFT_RANGE),
        default=None,
        help="relative CTR lift to size for, in [0.001, 10]",
    )
    plan.add_argument(
        "--exploration-share",
        type=bounded_float(0.0, 1.0),
        default=None,
        help="share of traffic for an exploration bucket",
    )
    plan.add_argument("--exploration-policy", default=None, help="its cover policy spec (default: uniform)")
    plan.add_argument(
        "--exploration-target",
        default=None,
        help="policy whose DR lift it is sized for (default: own_cohort)",
    )
    plan.add_argument("--cohorts", type=Path, default=None, help="cohorts folder (own_cohort sizing)")
    plan.add_argument("--out", type=Path, required=True)
    plan.set_defaults(run=_run_plan, error=plan.error)


def _run_plan(args: argparse.Namespace) -> None:
    from icg_rec.experiment.commands import plan

    plan(args)
