"""`icg-rec ab plan`: assignment table, per-arm cover manifests and the spec, from files."""

import argparse

import numpy as np
import polars as pl

from icg_rec.cohorts.refresh import GENERIC_COHORT, read_manifest
from icg_rec.errors import IcgRecError, SchemaError
from icg_rec.experiment.plan import (
    EXPLORE_ARM,
    ABPlanConfig,
    check_config,
    plan_ab,
    validate_pre_period,
    write_plan,
)
from icg_rec.io import load_toml_config


def arm_cover_manifests(items: pl.DataFrame, manifest: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """What each arm shows: control the original covers, generic the cohort -1 covers, personalized the cohorts'.

    Args:
        items: item_id, image_path (the original covers).
        manifest: a refresh manifest (item_id, cohort_id, key, path), e.g. from `read_manifest`.

    Returns:
        Per arm, item_id, cohort_id, cover_key, path.

    Raises:
        SchemaError: a missing column, a repeated item id, an item without an original cover, or a
            manifest that does not cover the catalogue exactly: every item needs its generic cover and a
            cover for every cohort of the manifest, and every manifest item must be in `items` (the
            message counts what is missing and quotes a few ids).
    """
    if missing := {"item_id", "cohort_id", "key", "path"} - set(manifest.columns):
        raise SchemaError(f"manifest is missing column(s) {sorted(missing)}; is it a refresh manifest?")
    if missing := {"item_id", "image_path"} - set(items.columns):
        raise SchemaError(f"items are missing column(s) {sorted(missing)}; expected item_id, image_path")
    _check_coverage(items, manifest)
    generated = manifest.select("item_id", "cohort_id", cover_key="key", path="path")
    original = items.select(
        "item_id", cohort_id=pl.lit(GENERIC_COHORT, pl.Int64), cover_key=pl.lit("original"), path="image_path"
    )
    return {
        "control": original,
        "generic": generated.filter(pl.col("cohort_id") == GENERIC_COHORT),
        "personalized": generated.filter(pl.col("cohort_id") != GENERIC_COHORT),
    }


def _check_coverage(items: pl.DataFrame, manifest: pl.DataFrame) -> None:
    """Refuses a manifest that leaves items of the catalogue without a cover in some arm, with counts."""
    if (repeated := items.filter(pl.col("item_id").is_duplicated())).height:
        raise SchemaError(
            f"items repeat {repeated['item_id'].n_unique()} item id(s), e.g. {repeated['item_id'].unique().head(5).to_list()}"
        )
    if (no_cover := items.filter(pl.col("image_path").is_null())).height:
        raise SchemaError(
            f"{no_cover.height} of {items.height} item(s) have no original cover (image_path) for the control "
            f"arm, e.g. item_id {no_cover['item_id'].head(5).to_list()}"
        )
    catalogue = items.select("item_id")
    if (unknown := manifest.join(catalogue, on="item_id", how="anti")).height:
        raise SchemaError(
            f"the manifest holds covers of {unknown['item_id'].n_unique()} item(s) not in the items table, "
            f"e.g. item_id {unknown['item_id'].unique().sort().head(5).to_list()}: was it refreshed for another catalogue?"
        )
    cohorts = sorted(manifest["cohort_id"].unique().to_list())
    if GENERIC_COHORT not in cohorts or len(cohorts) < 2:
        raise SchemaError(
            f"the manifest holds cohort(s) {cohorts}: the generic arm needs cohort {GENERIC_COHORT} and the "
            "personalized arm at least one cohort >= 0"
        )
    expected = catalogue.join(
        pl.DataFrame({"cohort_id": cohorts}, schema={"cohort_id": pl.Int64}), how="cross"
    )
    absent = expected.join(manifest.select("item_id", "cohort_id"), on=["item_id", "cohort_id"], how="anti")
    if absent.height:
        short = absent["item_id"].n_unique()
        raise SchemaError(
            f"the manifest covers {items.height - short} of {items.height} items in every cohort {cohorts}: "
            f"{absent.height} (item, cohort) cover(s) are missing, e.g. {absent.sort('item_id').head(5).rows()}; "
            "refresh every item of the items table before planning"
        )


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
    """Sizes the test (and its exploration bucket) from a pre-period log and writes what the launch review needs.

    The config is checked before any file is read; a bad one exits with status 2 and one line.
    """
    config = load_toml_config(ABPlanConfig, args.config, "ab") if args.config else ABPlanConfig()
    if args.expected_lift is not None:
        config.expected_lift = args.expected_lift
    for name in ("exploration_share", "exploration_policy", "exploration_target"):
        if (value := getattr(args, name, None)) is not None:
            setattr(config, name, value)
    try:
        check_config(config)
    except IcgRecError as err:
        args.error(str(err))
    pre_period = validate_pre_period(
        pl.read_parquet(args.interactions)
    )  # before the exploration sizing reads it
    items, manifest = pl.read_parquet(args.items), read_manifest(args.manifest)
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
