"""`icg-rec ab plan`: assignment table, per-arm cover manifests and the spec, from files."""

import argparse

import numpy as np
import polars as pl

from icg_rec.cohorts.refresh import GENERIC_COHORT
from icg_rec.errors import SchemaError
from icg_rec.experiment.plan import EXPLORE_ARM, ABPlanConfig, plan_ab, write_plan
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


def exploration_covers(items: pl.DataFrame, manifest: pl.DataFrame) -> pl.DataFrame:
    """What the exploration bucket draws from: every candidate cover with its cover_id (0 original, 1 generic, 2 + c).

    Args:
        items: item_id, image_path (the original covers).
        manifest: a refresh manifest (item_id, cohort_id, key, path).

    Returns:
        item_id, cover_id, kind, cohort_id, cover_key, path.
    """
    from icg_rec.ope.covers import candidates_table  # the cover id scheme `icg-rec ope` reads back

    if missing := {"item_id", "cohort_id", "key", "path"} - set(manifest.columns):
        raise SchemaError(f"manifest is missing column(s) {sorted(missing)}; is it a refresh manifest?")
    table = candidates_table(items["item_id"].to_numpy(), manifest)  # the originals, then the manifest's rows
    return table.with_columns(
        cover_key=pl.concat([pl.Series(["original"] * items.height), manifest["key"]]),
        path=pl.concat([items["image_path"], manifest["path"]]),
    )


def plan(args: argparse.Namespace) -> None:
    """Sizes the test (and its exploration bucket) from a pre-period log and writes what the launch review needs."""
    config = load_toml_config(ABPlanConfig, args.config, "ab") if args.config else ABPlanConfig()
    if args.expected_lift is not None:
        config.expected_lift = args.expected_lift
    for name in ("exploration_share", "exploration_policy", "exploration_target"):
        if (value := getattr(args, name, None)) is not None:
            setattr(config, name, value)
    pre_period = pl.read_parquet(args.interactions)
    items, manifest = pl.read_parquet(args.items), pl.read_parquet(args.manifest)
    arm_covers = {arm: arm_cover_manifests(items, manifest)[arm] for arm in config.arms}
    factor = None
    if config.exploration_share:
        explore = exploration_covers(items, manifest)
        factor = _exploration_factor(explore, pre_period, config, getattr(args, "cohorts", None))
        arm_covers[EXPLORE_ARM] = explore
    ab, table = plan_ab(pre_period, config, factor)
    write_plan(ab, table, args.out, arm_covers)
    if ab.exploration is not None:
        from icg_rec.ope.policies import parse_policy, save_policy

        save_policy(parse_policy(config.exploration_policy), args.out / "exploration_policy.json")
        e = ab.exploration
        print(f"exploration bucket {e.share:.1%}: {e.impressions_needed:,} impressions, {e.days_needed} days")
    print(f"{ab.sample_size_per_arm:,} users per arm, {ab.duration_days} days; spec: {args.out}/spec.md")


def _exploration_factor(
    explore: pl.DataFrame, pre_period: pl.DataFrame, config: ABPlanConfig, cohorts
) -> float:
    """The weight factor of the exploration policy for the target, over the pre-period impressions."""
    from icg_rec.ope.design import exploration_weight_factor
    from icg_rec.ope.policies import CoverCandidates

    candidates = CoverCandidates.from_table(explore.select("item_id", "cover_id", "kind", "cohort_id"))
    users = pre_period["user_id"].to_numpy()
    user_cohort = None
    if cohorts is not None:
        from icg_rec.cohorts.clustering import UserCohorts

        fitted = UserCohorts.load(cohorts)
        known = np.isin(users, fitted.user_ids_)
        user_cohort = np.zeros(len(users), dtype=np.int64)  # users the cohorts never saw: cohort 0's covers
        user_cohort[known] = fitted.cohort_of(users[known])
    return exploration_weight_factor(
        candidates,
        users,
        pre_period["item_id"].to_numpy(),
        config.exploration_policy,
        config.exploration_target,
        user_cohort,
    )
