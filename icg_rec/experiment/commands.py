"""`icg-rec ab plan`: assignment table, per-arm cover manifests and the spec, from files."""

import argparse

import polars as pl

from icg_rec.cohorts.refresh import GENERIC_COHORT
from icg_rec.errors import SchemaError
from icg_rec.experiment.plan import ABPlanConfig, plan_ab, write_plan
from icg_rec.io import load_toml_config


def arm_cover_manifests(items: pl.DataFrame, manifest: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """What each arm shows: control the original covers, generic the cohort -1 covers, personalized the cohorts'.

    Args:
        items: item_id, image_path (the original covers).
        manifest: a refresh manifest (item_id, cohort_id, key, path).

    Returns:
        Per arm, item_id, cohort_id, cover_key, path.
    """
    if missing := {"item_id", "cohort_id", "key", "path"} - set(manifest.columns):
        raise SchemaError(f"manifest is missing column(s) {sorted(missing)}; is it a refresh manifest?")
    generated = manifest.select("item_id", "cohort_id", cover_key="key", path="path")
    original = items.select(
        "item_id", cohort_id=pl.lit(GENERIC_COHORT, pl.Int64), cover_key=pl.lit("original"), path="image_path"
    )
    return {
        "control": original,
        "generic": generated.filter(pl.col("cohort_id") == GENERIC_COHORT),
        "personalized": generated.filter(pl.col("cohort_id") != GENERIC_COHORT),
    }


def plan(args: argparse.Namespace) -> None:
    """Sizes the test from a pre-period log and writes everything the launch review needs."""
    config = load_toml_config(ABPlanConfig, args.config, "ab") if args.config else ABPlanConfig()
    if args.expected_lift is not None:
        config.expected_lift = args.expected_lift
    pre_period = pl.read_parquet(args.interactions)
    arm_covers = arm_cover_manifests(pl.read_parquet(args.items), pl.read_parquet(args.manifest))
    ab, table = plan_ab(pre_period, config)
    write_plan(ab, table, args.out, {arm: arm_covers[arm] for arm in config.arms})
    print(f"{ab.sample_size_per_arm:,} users per arm, {ab.duration_days} days; spec: {args.out}/spec.md")
