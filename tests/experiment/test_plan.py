import json

import numpy as np
import polars as pl
import pytest

from icg_rec.errors import CheckpointError, IcgRecError, SchemaError
from icg_rec.experiment.plan import EXPECTED_LIFT_RANGE, ABPlanConfig, plan_ab, read_plan, write_plan
from icg_rec.experiment.power import RatioMoments, ratio_moments, sample_size_ratio_metric


@pytest.fixture(scope="module")
def pre_period():
    # 3,000 users over 28 days; each user has a stable CTR, so the two halves correlate (CUPED helps).
    rng = np.random.default_rng(0)
    n_users, rows = 3000, []
    user_ctr = rng.beta(2, 12, size=n_users)
    for user in range(n_users):
        n = int(rng.integers(4, 40))
        rows.append(
            pl.DataFrame(
                {
                    "user_id": np.full(n, user, dtype=np.int64),
                    "item_id": rng.integers(0, 500, size=n),
                    "label": rng.binomial(1, user_ctr[user], size=n).astype(np.float64),
                    "timestamp": np.sort(rng.integers(0, 28 * 86_400, size=n)),
                }
            )
        )
    return pl.concat(rows)


def test_plan_sizes_the_ratio_metric_with_cuped(pre_period):
    config = ABPlanConfig(expected_lift=0.05)
    plan, table = plan_ab(pre_period, config)
    per_user = pre_period.group_by("user_id").agg(c=pl.col("label").sum(), n=pl.len())
    moments = ratio_moments(per_user["c"].to_numpy(), per_user["n"].to_numpy())
    adjusted = RatioMoments(moments.ratio, moments.unit_variance * (1 - plan.cuped_variance_reduction), 3000)
    assert plan.baseline_ctr == pytest.approx(pre_period["label"].sum() / pre_period.height, rel=1e-12)
    assert plan.users == plan.users_in_experiment == table.height == 3000
    assert 0.05 < plan.cuped_variance_reduction < 0.5  # stable per-user CTRs, noisy halves
    assert plan.sample_size_per_arm == int(np.ceil(sample_size_ratio_metric(adjusted, 0.05)))
    assert plan.sample_size_per_arm < plan.sample_size_per_arm_without_cuped
    assert plan.duration_days == int(
        np.ceil(plan.sample_size_per_arm * 3 / (3000 / plan_span_days(pre_period)))
    )
    assert plan.srm_p_value > 0.001
    assert set(table["arm"].unique()) == {"control", "generic", "personalized"}


def plan_span_days(frame):
    return (frame["timestamp"].max() - frame["timestamp"].min()) / 86_400


def test_plan_is_deterministic(pre_period):
    _, first = plan_ab(pre_period, ABPlanConfig())
    _, second = plan_ab(pre_period, ABPlanConfig())
    assert first.equals(second)


def test_write_plan_writes_every_artefact(pre_period, tmp_path):
    plan, table = plan_ab(pre_period, ABPlanConfig(traffic_share=0.5))
    covers = pl.DataFrame({"item_id": [1], "cohort_id": [0], "cover_key": ["k"], "path": ["p.png"]})
    write_plan(plan, table, tmp_path, {arm: covers for arm in plan.config.arms})
    assert pl.read_parquet(tmp_path / "assignment.parquet").equals(table)
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert spec["sample_size_per_arm"] == plan.sample_size_per_arm
    assert "per-user CTR" in (tmp_path / "spec.md").read_text()
    assert sorted(p.name for p in tmp_path.glob("covers_*.parquet")) == [
        "covers_control.parquet",
        "covers_generic.parquet",
        "covers_personalized.parquet",
    ]
    assert 0.4 < plan.users_in_experiment / plan.users < 0.6


def test_write_plan_refuses_an_arm_without_covers(pre_period, tmp_path):
    plan, table = plan_ab(pre_period, ABPlanConfig())
    with pytest.raises(IcgRecError, match=r"arm\(s\) \['personalized'\]"):
        write_plan(plan, table, tmp_path, {"control": pl.DataFrame(), "generic": pl.DataFrame()})


def test_plan_refuses_bad_logs(pre_period):
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['label'\]"):
        plan_ab(pre_period.drop("label"), ABPlanConfig())
    with pytest.raises(SchemaError, match="empty"):
        plan_ab(pre_period.head(0), ABPlanConfig())
    with pytest.raises(IcgRecError, match="need a 'control' arm"):
        plan_ab(pre_period, ABPlanConfig(arms={"a": 0.5, "b": 0.5}))


def _with(frame, **columns):
    return frame.with_columns(**columns)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda f: _with(f, label=pl.when(pl.int_range(pl.len()) == 3).then(2.0).otherwise("label")),
            r"label: expected 1 \(click\) or 0",
        ),
        (
            lambda f: _with(f, label=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise("label")),
            r"label: expected Float64 without nulls",
        ),
        (
            lambda f: _with(
                f, label=pl.when(pl.int_range(pl.len()) == 3).then(float("nan")).otherwise("label")
            ),
            r"label: expected 1 \(click\) or 0",
        ),
        (
            lambda f: _with(f, user_id=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise("user_id")),
            r"user_id: expected Int64 without nulls",
        ),
        (
            lambda f: _with(f, user_id=pl.col("user_id") + 0.5),
            r"user_id: expected a float holding an integer id",
        ),
        (
            lambda f: pl.concat([f, f.head(2)]),
            r"user_id\+item_id\+timestamp: expected no duplicate impressions, found repeats; 4 of",
        ),
        (
            lambda f: pl.concat([f.drop("item_id"), f.drop("item_id").head(1)]),
            r"log.rows: expected no duplicate",
        ),
        (
            lambda f: _with(f, timestamp=pl.col("timestamp") - 10**9),
            r"timestamp: expected unix seconds in \[0,",
        ),
        (lambda f: _with(f, label=pl.lit(0.0)), r"label is 0 on all .* rows: per-user CTR has no variance"),
        (lambda f: _with(f, label=pl.lit(1)), r"label is 1 on all"),
        (
            lambda f: _with(f, user_id=pl.col("user_id").cast(pl.Date)),
            r"user_id: expected integer or string ids",
        ),
    ],
)
def test_plan_refuses_an_invalid_log(pre_period, edit, message):
    with pytest.raises(SchemaError, match=message):
        plan_ab(edit(pre_period), ABPlanConfig())


def test_user_ids_stored_as_floats_or_strings_get_the_same_buckets(pre_period):
    _, ints = plan_ab(pre_period, ABPlanConfig())
    _, floats = plan_ab(pre_period.with_columns(pl.col("user_id").cast(pl.Float64)), ABPlanConfig())
    _, strings = plan_ab(pre_period.with_columns(pl.col("user_id").cast(pl.String)), ABPlanConfig())
    assert floats.equals(ints)
    assert strings.with_columns(pl.col("unit_id").cast(pl.Int64)).sort("unit_id").equals(ints)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            ABPlanConfig(expected_lift=0.0),
            r"expected_lift must be a relative lift in \[0.001, 10.0\], got 0.0",
        ),
        (ABPlanConfig(expected_lift=float("inf")), "expected_lift"),
        (ABPlanConfig(expected_lift=float("nan")), "expected_lift"),
        (ABPlanConfig(expected_lift=1e-9), "expected_lift"),
        (ABPlanConfig(expected_lift=-0.5), "expected_lift"),
        (
            ABPlanConfig(arms={"control": 0.5, "generic": 0.5, "personalized": 0.0}),
            r"arm weights must be finite numbers in \(0, 1\], got \{'personalized': 0.0\}",
        ),
        (ABPlanConfig(arms={"control": 1.5, "personalized": -0.5}), "arm weights must be finite"),
        (ABPlanConfig(arms={"control": 1.0}), "need a 'control' arm and at least one treatment arm"),
        (ABPlanConfig(arms={"control": 0.5, "generic": 0.3}), "must sum to 1"),
        (ABPlanConfig(alpha=0.0), "need 0 < alpha < power < 1"),
        (ABPlanConfig(power=float("nan")), "need 0 < alpha < power < 1"),
        (ABPlanConfig(traffic_share=0.0), r"traffic_share must lie in \(0, 1\]"),
        (ABPlanConfig(n_buckets=0), "n_buckets must be an integer >= 1"),
    ],
)
def test_plan_refuses_an_invalid_config(pre_period, config, message):
    with pytest.raises(IcgRecError, match=message):
        plan_ab(pre_period, config)


def test_the_cli_lift_bounds_are_the_plans():
    from icg_rec.experiment import cli

    assert cli.EXPECTED_LIFT_RANGE == EXPECTED_LIFT_RANGE


def test_a_written_plan_reads_back_verified(pre_period, tmp_path):
    plan, table = plan_ab(pre_period, ABPlanConfig())
    covers = pl.DataFrame({"item_id": [1], "cohort_id": [0], "cover_key": ["k"], "path": ["p.png"]})
    write_plan(plan, table, tmp_path / "ab", {arm: covers for arm in plan.config.arms})
    spec, assignment, arm_covers = read_plan(tmp_path / "ab")
    assert spec["sample_size_per_arm"] == plan.sample_size_per_arm and assignment.equals(table)
    assert set(arm_covers) == set(plan.config.arms) and arm_covers["control"].equals(covers)
    path = tmp_path / "ab" / "assignment.parquet"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="file 'assignment.parquet' does not match its sha256"):
        read_plan(tmp_path / "ab")
