import hashlib
import json

import numpy as np
import polars as pl
import pytest
from scipy import stats

from icg_rec.cli import main
from icg_rec.cohorts.refresh import write_manifest
from icg_rec.errors import IcgRecError
from icg_rec.experiment.plan import EXPLORE_ARM, ABPlanConfig, plan_ab, write_plan


@pytest.fixture(scope="module")
def pre_period():
    rng = np.random.default_rng(0)
    n = 20_000
    return pl.DataFrame(
        {
            "user_id": rng.integers(0, 2000, n),
            "item_id": rng.integers(0, 20, n),
            "label": (rng.random(n) < 0.1).astype(np.float64),
            "timestamp": np.sort(rng.integers(0, 10 * 86_400, n)),
        }
    )


def test_exploration_bucket_is_sized_from_the_weight_factor(pre_period):
    config = ABPlanConfig(traffic_share=0.6, exploration_share=0.2)
    plan, table = plan_ab(pre_period, config, exploration_factor=20.0)
    e = plan.exploration
    ctr = pre_period["label"].mean()
    expected = ctr * (1 - ctr) * 20.0 * (stats.norm.isf(0.025) / (0.02 * ctr)) ** 2
    assert e.impressions_needed == int(np.ceil(expected))
    span = (pre_period["timestamp"].max() - pre_period["timestamp"].min()) / 86_400
    assert e.impressions_per_day == pytest.approx(pre_period.height / span)
    assert e.days_needed == int(np.ceil(expected / (e.impressions_per_day * 0.2)))
    explore = table.filter(pl.col("arm") == EXPLORE_ARM)
    assert explore.height == e.users_in_bucket > 0
    assert explore["bucket"].min() >= 600 and explore["bucket"].max() < 800
    assert (
        table.filter(pl.col("bucket") >= 800)["arm"].null_count()
        == table.filter(pl.col("bucket") >= 800).height
    )
    assert plan.users_in_experiment == table.filter(pl.col("bucket") < 600).height
    base, _ = plan_ab(pre_period, ABPlanConfig(traffic_share=0.6))
    assert base.exploration is None and base.sample_size_per_arm == plan.sample_size_per_arm


@pytest.mark.parametrize(
    ("config", "factor", "message"),
    [
        (ABPlanConfig(traffic_share=0.9, exploration_share=0.2), 20.0, "exceed the layer"),
        (ABPlanConfig(traffic_share=0.5, exploration_share=0.2), None, "weight factor"),
        (ABPlanConfig(traffic_share=0.5, exploration_share=-0.1), 20.0, r"\[0, 1\)"),
        (ABPlanConfig(traffic_share=0.5, exploration_share=0.0001), 20.0, "less than one"),
        (
            ABPlanConfig(traffic_share=0.5, exploration_share=0.2, exploration_half_width=0),
            20.0,
            "half_width",
        ),
    ],
)
def test_bad_exploration_settings_are_refused(pre_period, config, factor, message):
    with pytest.raises(IcgRecError, match=message):
        plan_ab(pre_period, config, exploration_factor=factor)


def test_write_plan_needs_the_exploration_manifest(pre_period, tmp_path):
    plan, table = plan_ab(pre_period, ABPlanConfig(traffic_share=0.5, exploration_share=0.1), 20.0)
    covers = {arm: pl.DataFrame({"item_id": [0]}) for arm in plan.config.arms}
    with pytest.raises(IcgRecError, match="exploration bucket"):
        write_plan(plan, table, tmp_path, covers)


def test_ab_plan_command_reserves_and_sizes_an_exploration_bucket(pre_period, tmp_path):
    items = pl.DataFrame({"item_id": np.arange(20), "image_path": [f"/covers/{i}.png" for i in range(20)]})
    rows = [(i, c) for i in range(20) for c in [-1, 0, 1]]
    keys = [hashlib.sha256(f"{i}:{c}".encode()).hexdigest()[:24] for i, c in rows]
    manifest = pl.DataFrame(
        {
            "item_id": [r[0] for r in rows],
            "cohort_id": [r[1] for r in rows],
            "key": keys,
            "path": [f"/refresh/covers/{k[:2]}/{k}.png" for k in keys],
            "status": "generated",
            "item_hash": "h",
            "cohort_version": "v",
            "generator_version": "g",
            "seed": 0,
            "sha256": [hashlib.sha256(k.encode()).hexdigest() for k in keys],
        },
        schema_overrides={"seed": pl.Int64},
    )  # a well-formed refresh manifest (the plan reads no cover file)
    pre_period.write_parquet(tmp_path / "log.parquet")
    items.write_parquet(tmp_path / "items.parquet")
    write_manifest(manifest, tmp_path / "manifest.parquet")
    (tmp_path / "ab.toml").write_text("[ab]\ntraffic_share = 0.5\n")
    argv = ["ab", "plan", "--interactions", str(tmp_path / "log.parquet"), "--items", str(tmp_path / "items.parquet"),
            "--manifest", str(tmp_path / "manifest.parquet"), "--config", str(tmp_path / "ab.toml"),
            "--exploration-share", "0.25", "--out", str(tmp_path / "ab")]  # fmt: skip
    assert main(argv) == 0
    spec = json.loads((tmp_path / "ab" / "spec.json").read_text())
    # uniform over 4 covers (original, generic, 2 cohorts); own_cohort (cohort 0) vs original: 1/(1/4) + 1/(1/4)
    assert spec["exploration"]["weight_factor"] == pytest.approx(8.0)
    assert spec["exploration"]["policy"] == "uniform" and spec["exploration"]["target"] == "own_cohort"
    explore = pl.read_parquet(tmp_path / "ab" / f"covers_{EXPLORE_ARM}.parquet")
    assert explore.height == 80 and sorted(explore["cover_id"].unique().to_list()) == [0, 1, 2, 3]
    assert (
        explore.filter(pl.col("cover_id") == 3)["path"].to_list()[0] == manifest["path"][2]
    )  # item 0, cohort 1
    assert json.loads((tmp_path / "ab" / "exploration_policy.json").read_text()) == {"policy": "uniform"}
    assert "Exploration bucket" in (tmp_path / "ab" / "spec.md").read_text()
