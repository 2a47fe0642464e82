"""`icg-rec ope`: estimate cover policies' CTR from a cover-aware log (cover_id + propensity)."""

import argparse
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    """Registers the `ope` command."""
    from icg_rec.argtypes import non_negative_float, positive_int, seed

    ope = groups.add_parser(
        "ope", help="off-policy evaluation of cover policies on a log with cover_id and propensity"
    )
    ope.add_argument(
        "--log", type=Path, required=True, help="interactions (CSV/parquet) with cover_id, propensity"
    )
    ope.add_argument(
        "--candidates", type=Path, default=None, help="table: item_id, cover_id, kind, cohort_id, image_path"
    )
    ope.add_argument(
        "--refresh", type=Path, default=None, help="or: a refresh folder (cover ids 0/1/2+cohort)"
    )
    ope.add_argument("--items", type=Path, default=None, help="with --refresh: items table (original covers)")
    ope.add_argument("--columns", type=Path, default=None, help="TOML column mapping of the log and items")
    ope.add_argument(
        "--policies",
        nargs="+",
        default=["original", "generic", "own_cohort"],
        help="target policy specs: original generic own_cohort reward_greedy softmax:T epsilon:E:SPEC uniform",
    )
    ope.add_argument("--cohorts", type=Path, default=None, help="cohorts folder (own_cohort)")
    ope.add_argument(
        "--reward", type=Path, default=None, help="personalized reward model folder, cnn tower (reward_*)"
    )
    ope.add_argument(
        "--estimators", nargs="+", default=None, help="default: ips snips dm dr dr_clipped switch_dr"
    )
    ope.add_argument(
        "--clip", type=non_negative_float, default=10.0, help="weight threshold of dr_clipped and switch_dr"
    )
    ope.add_argument("--n-boot", type=positive_int, default=1000, help="user-level bootstrap replicates")
    ope.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="covers are resized to this side (default: first cover's)",
    )
    ope.add_argument("--seed", type=seed, default=0)
    ope.add_argument("--out", type=Path, required=True, help="folder for ope.json and report.md")
    ope.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from icg_rec.ope.commands import run_ope  # imports torch: only when asked for

    return run_ope(args)
