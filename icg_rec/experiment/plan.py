"""`icg-rec ab plan`: the assignment table, per-arm cover manifests and the experiment spec.

Sizing uses the pre-period log: per-user CTR is the primary metric (a ratio metric, delta-method
variance, randomised by user), CUPED's variance reduction is estimated by splitting the pre-period in
two halves by time (first half as covariate, second as metric), and the duration follows from how fast the
pre-period accrued distinct users (users return, so daily actives would overstate the accrual).

An exploration bucket (`exploration_share` > 0) takes the layer's buckets right after the experiment's:
its users see covers drawn per impression by the exploration policy, logged with cover_id and
propensity, so that `icg-rec ope` can later estimate any cover policy's CTR. It is sized for the DR
estimate of the target policy's lift over the original cover (icg_rec.ope.design): impressions needed
= sigma^2 (z / (h CTR))^2 with sigma^2 = CTR (1 - CTR) x the exploration weight factor
E[sum_a (pi_target(a) - pi_original(a))^2 / pi_explore(a)], which the caller computes from the candidates.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from icg_rec.data.schema import TIMESTAMP_RANGE
from icg_rec.errors import IcgRecError, SchemaError
from icg_rec.experiment.assignment import HASHES, Experiment, Layer, assign
from icg_rec.experiment.power import (
    RatioMoments,
    duration_days,
    minimum_effect_size,
    ratio_moments,
    sample_size_ratio_metric,
    sample_size_two_proportions,
)
from icg_rec.experiment.variance import srm_check, variance_reduction
from icg_rec.io import read_json, verify_folder, write_folder, write_json

# Relative lifts a plan may be sized for: below 0.1% the sample size runs to billions of users per arm
# (1e-9 asked for 6e18), above 1000% no CTR stays a probability.
EXPECTED_LIFT_RANGE = (0.001, 10.0)
_SAMPLE_ROWS = 5  # offending rows quoted in an error message


@dataclass
class ABPlanConfig:
    """What the experiment tests and how it is sized."""

    name: str = "icg-personalized-covers"  # experiment name, also the salt of the arm split
    layer: str = "covers"  # layer (namespace) the experiment lives in
    salt: str = "covers-v1"  # layer salt; change it to reshuffle every user
    hash: str = "md5"  # "md5" or "fnv1a"
    n_buckets: int = 1000  # bucket granularity of the layer
    traffic_share: float = 1.0  # share of the layer's buckets given to this experiment
    arms: dict[str, float] = field(
        default_factory=lambda: {"control": 1 / 3, "generic": 1 / 3, "personalized": 1 / 3}
    )  # arm -> weight; "control" shows the original covers
    expected_lift: float = 0.05  # relative per-user CTR lift to size for (from the offline evidence)
    alpha: float = 0.05  # two-sided significance level (per comparison with control)
    power: float = 0.8  # target power
    exploration_share: float = 0.0  # share of the layer's buckets for the exploration bucket (0 = none)
    exploration_policy: str = "uniform"  # cover policy spec of the exploration bucket (icg_rec.ope.policies)
    exploration_target: str = "own_cohort"  # policy whose DR lift over the original cover the bucket sizes
    exploration_half_width: float = 0.02  # 95% CI half-width of that lift, relative to the baseline CTR
    hypothesis: str = (
        "Covers generated per user cohort and aligned with the personalized reward raise per-user CTR "
        "over the original covers, and over generic generated covers."
    )


@dataclass
class ExplorationPlan:
    """The exploration bucket and what it takes to read the target's lift from it."""

    share: float  # share of the layer's traffic in the bucket
    policy: str  # exploration policy spec
    target: str  # target policy spec
    weight_factor: float  # E[sum_a (pi_target - pi_original)^2 / pi_explore] over the pre-period impressions
    impressions_needed: int  # impressions for a 95% CI half-width of half_width x baseline CTR on the lift
    impressions_per_day: float  # pre-period impressions per day (all traffic)
    days_needed: int  # days the bucket must run at `share` to log impressions_needed
    users_in_bucket: int  # pre-period users whose bucket is the exploration bucket


@dataclass
class ABPlan:
    """The sized experiment: what `plan_ab` computed, as written to spec.json."""

    config: ABPlanConfig
    baseline_ctr: float  # per-user CTR (ratio metric) in the pre-period
    users: int  # users assigned
    users_in_experiment: int  # users whose bucket lies in the experiment's range
    new_users_per_day: float  # distinct users first seen per day, over the pre-period
    cuped_variance_reduction: float  # corr(second half, first half)^2 of per-user CTR
    sample_size_per_arm: int  # users per arm, CUPED-adjusted, ratio metric
    sample_size_per_arm_without_cuped: int  # users per arm, ratio metric, no CUPED
    impressions_per_arm_naive: int  # impressions per arm if impressions were independent (understates)
    mde_at_available_users: float  # relative lift detectable with the users the experiment can have
    duration_days: int  # days until the experiment's share of newly seen users fills every arm
    srm_p_value: float  # sanity check of the assignment table against the planned split
    exploration: ExplorationPlan | None = None  # the exploration bucket, when exploration_share > 0


EXPLORE_ARM = "explore"  # arm name of the exploration bucket's users in the assignment table


def plan_ab(
    pre_period: pl.DataFrame, config: ABPlanConfig, exploration_factor: float | None = None
) -> tuple[ABPlan, pl.DataFrame]:
    """Assigns the pre-period's users to arms and sizes the experiment (and its exploration bucket).

    Args:
        pre_period: interactions (user_id, item_id, label, timestamp) before the experiment.
        config: the experiment.
        exploration_factor: the exploration weight factor (see the module docstring); required when
            config.exploration_share > 0 (`icg_rec.ope.design.exploration_weight_factor`).

    Returns:
        The plan and the assignment table (user_id, bucket, arm; arm null outside the experiment,
        "explore" in the exploration bucket).

    Raises:
        IcgRecError: the config is invalid (`check_config`).
        SchemaError: the log is invalid (`validate_pre_period`).
    """
    check_config(config)
    pre_period = validate_pre_period(pre_period)
    per_user = (
        pre_period.group_by("user_id").agg(clicks=pl.col("label").sum(), impressions=pl.len()).sort("user_id")
    )
    moments = ratio_moments(per_user["clicks"].to_numpy(), per_user["impressions"].to_numpy())
    rho2 = _cuped_reduction(pre_period)
    adjusted = RatioMoments(moments.ratio, moments.unit_variance * (1 - rho2), moments.n_units)
    control_ratio = _control_ratio(config)
    n_cuped = sample_size_ratio_metric(
        adjusted, config.expected_lift, config.alpha, config.power, control_ratio
    )
    n_plain = sample_size_ratio_metric(
        moments, config.expected_lift, config.alpha, config.power, control_ratio
    )
    n_impr = sample_size_two_proportions(
        moments.ratio, config.expected_lift, config.alpha, config.power, control_ratio
    )

    stop = round(config.traffic_share * config.n_buckets)
    experiment = Experiment(
        config.name,
        Layer(config.layer, config.salt, config.n_buckets, config.hash),
        0,
        stop,
        dict(config.arms),
    )
    table = assign(per_user["user_id"].to_list(), experiment)
    explore_stop = stop + round(config.exploration_share * config.n_buckets)
    if config.exploration_share:
        _check_exploration(config, exploration_factor, explore_stop)
        in_bucket = (pl.col("bucket") >= stop) & (pl.col("bucket") < explore_stop)
        table = table.with_columns(arm=pl.when(in_bucket).then(pl.lit(EXPLORE_ARM)).otherwise(pl.col("arm")))
    inside = table.filter(pl.col("arm").is_not_null() & (pl.col("arm") != EXPLORE_ARM))
    observed = {arm: int((inside["arm"] == arm).sum()) for arm in config.arms}
    srm = srm_check(observed, config.arms)

    span_days = max(1.0, (pre_period["timestamp"].max() - pre_period["timestamp"].min()) / 86_400)
    new_users_per_day = per_user.height / span_days
    users_per_control = min(observed.values())
    plan = ABPlan(
        config=config,
        baseline_ctr=moments.ratio,
        users=table.height,
        users_in_experiment=inside.height,
        new_users_per_day=new_users_per_day,
        cuped_variance_reduction=rho2,
        sample_size_per_arm=int(np.ceil(n_cuped)),
        sample_size_per_arm_without_cuped=int(np.ceil(n_plain)),
        impressions_per_arm_naive=int(np.ceil(n_impr)),
        mde_at_available_users=_mde(adjusted, users_per_control, config, control_ratio),
        # control holds arms["control"] of the experiment's users and needs n_cuped of them
        duration_days=duration_days(
            n_cuped / config.arms["control"], new_users_per_day, config.traffic_share
        ),
        srm_p_value=srm.p_value,
    )
    if config.exploration_share:
        plan.exploration = _size_exploration(
            config, exploration_factor, moments.ratio, pre_period, span_days, table
        )
    return plan, table


def check_config(config: ABPlanConfig) -> None:
    """Refuses a config that cannot describe a sound experiment, naming the field.

    Raises:
        IcgRecError: an expected lift outside EXPECTED_LIFT_RANGE or not finite; alpha or power outside
            (0, 1) or power <= alpha; a traffic share outside (0, 1]; fewer than one bucket; an unknown
            hash; no control arm or no treatment arm; an arm weight that is not finite and > 0; weights
            not summing to 1.
    """
    low, high = EXPECTED_LIFT_RANGE
    problems = []
    if not (isinstance(config.expected_lift, int | float) and low <= config.expected_lift <= high):
        problems.append(
            f"expected_lift must be a relative lift in [{low}, {high}], got {config.expected_lift!r}"
        )
    if not (0 < config.alpha < config.power < 1):
        problems.append(f"need 0 < alpha < power < 1, got alpha={config.alpha!r}, power={config.power!r}")
    if not (0 < config.traffic_share <= 1):
        problems.append(f"traffic_share must lie in (0, 1], got {config.traffic_share!r}")
    if isinstance(config.n_buckets, bool) or not isinstance(config.n_buckets, int) or config.n_buckets < 1:
        problems.append(f"n_buckets must be an integer >= 1, got {config.n_buckets!r}")
    if config.hash not in HASHES:
        problems.append(f"hash must be one of {HASHES}, got {config.hash!r}")
    arms = config.arms
    if not isinstance(arms, dict) or "control" not in arms or len(arms) < 2:
        problems.append(f"arms {arms!r} need a 'control' arm and at least one treatment arm")
    elif bad := {a: w for a, w in arms.items() if not (isinstance(w, int | float) and 0 < w <= 1)}:
        problems.append(f"arm weights must be finite numbers in (0, 1], got {bad}")
    elif abs(sum(arms.values()) - 1.0) > 1e-9:
        problems.append(f"arm weights must sum to 1, got {sum(arms.values())!r} for {arms}")
    if problems:
        raise IcgRecError("invalid A/B plan config: " + "; ".join(problems))


def validate_pre_period(log: pl.DataFrame) -> pl.DataFrame:
    """Checks a pre-period log as the data layer checks interactions, and puts user ids in canonical form.

    Args:
        log: user_id (integers, floats holding integers, or strings), label (0/1, any numeric or bool
            type), timestamp (integer unix seconds), optionally item_id and more.

    Returns:
        The log with user_id as Int64 (from any integer or integral float type) or String, label as
        Float64: ids hash the same however the file stored them.

    Raises:
        SchemaError: naming the column and quoting rows: a missing column, an empty log, a null, a
            fractional or non-finite float user_id, a label outside {0, 1}, a timestamp outside
            TIMESTAMP_RANGE, duplicate rows ((user_id, item_id, timestamp) when item_id is present),
            or labels all 0 or all 1 (per-user CTR has no variance to size a test from).
    """
    if missing := {"user_id", "label", "timestamp"} - set(log.columns):
        raise SchemaError(f"pre-period log is missing column(s) {sorted(missing)}; got {log.columns}")
    if log.height == 0:
        raise SchemaError("pre-period log is empty: nothing to size the experiment from")
    schema = log.schema
    for name in ("user_id", "label", "timestamp"):
        _refuse_rows(log, name, pl.col(name).is_null(), f"{schema[name]} without nulls")
    user = schema["user_id"]
    if user.is_float():
        _refuse_rows(
            log,
            "user_id",
            ~pl.col("user_id").is_finite() | (pl.col("user_id") != pl.col("user_id").round()),
            "a float holding an integer id (5.0), found fractional or non-finite ids",
        )
        log = log.with_columns(pl.col("user_id").cast(pl.Int64))
    elif user.is_integer():
        log = log.with_columns(pl.col("user_id").cast(pl.Int64))
    elif user != pl.String:
        raise SchemaError(f"pre-period log.user_id: expected integer or string ids, got {user}")
    if not (schema["label"].is_numeric() or schema["label"] == pl.Boolean):
        raise SchemaError(f"pre-period log.label: expected 0/1 numbers, got {schema['label']}")
    log = log.with_columns(pl.col("label").cast(pl.Float64))
    _refuse_rows(log, "label", ~pl.col("label").is_in([0.0, 1.0]), "1 (click) or 0 (no click), no NaN")
    if not schema["timestamp"].is_integer():
        raise SchemaError(
            f"pre-period log.timestamp: expected integer unix seconds, got {schema['timestamp']}"
        )
    low, high = TIMESTAMP_RANGE
    ts = pl.col("timestamp")
    _refuse_rows(log, "timestamp", (ts < low) | (ts >= high), f"unix seconds in [{low}, {high})")
    key = [c for c in ("user_id", "item_id", "timestamp") if c in log.columns]
    _refuse_rows(
        log,
        "+".join(key) if "item_id" in key else "rows",
        pl.struct(key if "item_id" in key else log.columns).is_duplicated(),
        "no duplicate impressions, found repeats",
    )
    clicks = log["label"].sum()
    if clicks in (0, log.height):
        raise SchemaError(
            f"pre-period log.label is {int(clicks > 0)} on all {log.height} rows: per-user CTR has no "
            "variance to size a test from"
        )
    return log


def _refuse_rows(log: pl.DataFrame, column: str, bad: pl.Expr, expected: str) -> None:
    if (offending := log.filter(bad)).height:
        raise SchemaError(
            f"pre-period log.{column}: expected {expected}; {offending.height} of {log.height} row(s) "
            f"offend, e.g. {offending.head(_SAMPLE_ROWS).to_dicts()}"
        )


def write_plan(
    plan: ABPlan, table: pl.DataFrame, out_dir: str | Path, arm_covers: dict[str, pl.DataFrame]
) -> Path:
    """Writes assignment.parquet, covers_<arm>.parquet, spec.json and spec.md into `out_dir`, as one set.

    The folder goes through `write_folder` (MANIFEST.json of sha256 per file): a serving system checks
    it with `read_plan` (or `icg_rec.io.verify_folder`) before it routes a single user.

    Args:
        plan: from `plan_ab`.
        table: the assignment table from `plan_ab`.
        out_dir: output folder (replaced as a whole).
        arm_covers: per arm, the cover each (item_id, cohort_id) shows (columns item_id, cohort_id,
            cover_key, path); every arm of the plan needs one.

    Returns:
        The output folder.
    """
    if missing := set(plan.config.arms) - set(arm_covers):
        raise IcgRecError(f"no cover manifest for arm(s) {sorted(missing)}; every arm needs one")
    if plan.exploration is not None and EXPLORE_ARM not in arm_covers:
        raise IcgRecError(f"no cover manifest for the exploration bucket: pass arm_covers[{EXPLORE_ARM!r}]")

    def write(folder: Path) -> None:
        table.write_parquet(folder / "assignment.parquet")
        for arm, covers in arm_covers.items():
            covers.write_parquet(folder / f"covers_{arm}.parquet")
        write_json(folder / "spec.json", asdict(plan))
        (folder / "spec.md").write_text(render_spec(plan))

    out = Path(out_dir)
    write_folder(out, write)
    return out


def read_plan(folder: str | Path) -> tuple[dict, pl.DataFrame, dict[str, pl.DataFrame]]:
    """Reads what `write_plan` wrote, after checking every file against the folder's MANIFEST.json.

    Args:
        folder: an A/B plan folder.

    Returns:
        (spec.json as a dict, the assignment table, per arm (the exploration bucket included) its covers).

    Raises:
        CheckpointError: naming the file that is missing, truncated or changed since it was written.
    """
    folder = Path(folder)
    files = verify_folder(folder, required=["assignment.parquet", "spec.json"])
    covers = {
        name.removeprefix("covers_").removesuffix(".parquet"): pl.read_parquet(folder / name)
        for name in sorted(files)
        if name.startswith("covers_") and name.endswith(".parquet")
    }
    return read_json(folder / "spec.json"), pl.read_parquet(folder / "assignment.parquet"), covers


def render_spec(plan: ABPlan) -> str:
    """The experiment spec as Markdown, for the review that approves the launch."""
    c = plan.config
    arms = ", ".join(f"`{a}` {w:.0%}" for a, w in c.arms.items())
    return f"""# Experiment spec: {c.name}

**Hypothesis.** {c.hypothesis}

| | |
|---|---|
| Unit of randomisation | user (salted {c.hash} of `"{c.salt}:<user_id>"`, layer `{c.layer}`, {c.n_buckets} buckets) |
| Arms | {arms} |
| Traffic | {c.traffic_share:.0%} of the layer |
| Primary metric | per-user CTR (clicks / impressions, ratio metric, delta-method variance) |
| Guardrails | impressions per user, sample-ratio mismatch (chi-square, p < 0.001 stops the readout) |
| Variance reduction | CUPED on pre-period per-user CTR (expected variance reduction {plan.cuped_variance_reduction:.1%}) |
| Baseline per-user CTR | {plan.baseline_ctr:.4f} |
| Effect sized for | +{c.expected_lift:.1%} relative, alpha {c.alpha} two-sided, power {c.power} |
| Users per arm (CUPED / without) | {plan.sample_size_per_arm:,} / {plan.sample_size_per_arm_without_cuped:,} |
| Impressions per arm if independent (understates variance) | {plan.impressions_per_arm_naive:,} |
| MDE with the {plan.users_in_experiment:,} users available now | +{plan.mde_at_available_users:.1%} relative |
| Duration at {plan.new_users_per_day:,.0f} new users a day | {plan.duration_days} days (run whole weeks) |
| Assignment check | SRM p = {plan.srm_p_value:.3f} on {plan.users:,} pre-period users |

Each treatment arm is compared with control; with two treatments, apply Holm's correction to the two p-values.
{_render_exploration(plan.exploration, c)}"""


def _render_exploration(e: ExplorationPlan | None, c: ABPlanConfig) -> str:
    if e is None:
        return ""
    return f"""
## Exploration bucket

| | |
|---|---|
| Traffic | {e.share:.1%} of the layer (the buckets after the experiment's; arm `explore` in the assignment table) |
| Exploration policy | `{e.policy}`: each impression's cover drawn from it; log `cover_id` and `propensity` |
| Sized for | DR estimate of `{e.target}`'s CTR lift over the original cover, 95% CI half-width {c.exploration_half_width:.1%} of the baseline CTR |
| Weight factor E[sum (pi_target - pi_original)^2 / pi_explore] | {e.weight_factor:.2f} |
| Impressions needed | {e.impressions_needed:,} |
| Duration at {e.impressions_per_day:,.0f} impressions a day | {e.days_needed} days |

The impressions are a-priori (Bernoulli residuals, no user heterogeneity of the lift): a lower bound. On
SimWorld it asked for 26% fewer impressions than the DR lift's spread across simulated logs needed
(`python -m eval.ope`); resize from the first weeks' exploration log. Read the bucket with
`icg-rec ope --log <exploration log> --policies original {e.target}`.
"""


def _check_exploration(config: ABPlanConfig, factor: float | None, explore_stop: int) -> None:
    if not 0 < config.exploration_share < 1:
        raise IcgRecError(f"exploration_share must lie in [0, 1), got {config.exploration_share}")
    if explore_stop > config.n_buckets:
        raise IcgRecError(
            f"traffic_share {config.traffic_share} + exploration_share {config.exploration_share} exceed the layer: "
            "the exploration bucket takes the buckets after the experiment's"
        )
    if explore_stop == round(config.traffic_share * config.n_buckets):
        raise IcgRecError(
            f"exploration_share {config.exploration_share} is less than one of {config.n_buckets} buckets"
        )
    if factor is None or not factor > 0:
        raise IcgRecError(
            f"an exploration bucket needs its weight factor > 0 (icg_rec.ope.design.exploration_weight_factor), got {factor}"
        )
    if not config.exploration_half_width > 0:
        raise IcgRecError(f"exploration_half_width must be > 0, got {config.exploration_half_width}")


def _size_exploration(
    config: ABPlanConfig,
    factor: float,
    ctr: float,
    pre_period: pl.DataFrame,
    span_days: float,
    table: pl.DataFrame,
) -> ExplorationPlan:
    """Impressions the DR lift needs, and the days the bucket takes to log them at its share of traffic."""
    from scipy import stats

    if not 0 < ctr < 1:
        raise IcgRecError(f"the pre-period CTR is {ctr}: an exploration bucket cannot be sized from it")
    z = stats.norm.isf(0.025)
    needed = ctr * (1 - ctr) * factor * (z / (config.exploration_half_width * ctr)) ** 2
    per_day = pre_period.height / span_days
    return ExplorationPlan(
        share=config.exploration_share,
        policy=config.exploration_policy,
        target=config.exploration_target,
        weight_factor=factor,
        impressions_needed=int(np.ceil(needed)),
        impressions_per_day=per_day,
        days_needed=int(np.ceil(needed / (per_day * config.exploration_share))),
        users_in_bucket=int((table["arm"] == EXPLORE_ARM).sum()),
    )


def _cuped_reduction(pre_period: pl.DataFrame) -> float:
    """corr^2 of per-user CTR between the two halves of the pre-period (users active in both)."""
    median = pre_period["timestamp"].median()
    halves = (
        pre_period.with_columns(half=(pl.col("timestamp") > median).cast(pl.Int8))
        .group_by("user_id", "half")
        .agg(ctr=pl.col("label").mean())
    )
    wide = halves.pivot(on="half", index="user_id", values="ctr").drop_nulls()
    if wide.height < 3 or "0" not in wide.columns or "1" not in wide.columns:
        return 0.0
    first, second = wide["0"].to_numpy(), wide["1"].to_numpy()
    if first.std() == 0 or second.std() == 0:
        return 0.0
    return variance_reduction(second, first)


def _control_ratio(config: ABPlanConfig) -> float:
    if "control" not in config.arms:
        raise IcgRecError(f"arms {sorted(config.arms)} need a 'control' arm")
    treatments = [w for a, w in config.arms.items() if a != "control"]
    return min(treatments) / config.arms["control"]


def _mde(moments: RatioMoments, users_per_control: int, config: ABPlanConfig, ratio: float) -> float:
    """Relative lift of the ratio metric detectable with the users at hand: d * sd / mean."""
    if users_per_control < 2:
        return float("inf")
    d = minimum_effect_size(users_per_control, config.alpha, config.power, ratio)
    return d * float(np.sqrt(moments.unit_variance)) / moments.ratio
