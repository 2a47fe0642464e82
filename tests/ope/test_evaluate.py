import json

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from icg_rec.cli import main
from icg_rec.data.sim import SimConfig, SimWorld, render_covers
from icg_rec.data.sim.exploration import CoverExposure
from icg_rec.data.sim.world import _uniform_styles
from icg_rec.errors import SchemaError
from icg_rec.ope.evaluate import OPEConfig, evaluate_policies
from icg_rec.ope.outcome import OutcomeConfig, fit_outcome_oof
from icg_rec.ope.policies import CoverCandidates, parse_policy, policy_context

TINY = SimConfig(n_users=80, n_items=10, n_cohorts=2, image_size=8, impressions_per_user=6, seed=2)


@pytest.fixture(scope="module")
def setup():
    """A tiny world, 3 candidates per item (original, generic, cohort 0 cover), a uniform exploration log."""
    world = SimWorld.generate(TINY)
    extra = render_covers(_uniform_styles(2 * TINY.n_items, torch.Generator().manual_seed(0)), 8)
    images = torch.cat([world.covers[:, None], extra.reshape(TINY.n_items, 2, 3, 8, 8)], dim=1)  # (n, 3, ...)
    table = pl.DataFrame(
        {
            "item_id": np.repeat(np.arange(TINY.n_items), 3),
            "cover_id": np.tile([0, 1, 2], TINY.n_items),
            "kind": ["original", "generic", "cohort"] * TINY.n_items,
            "cohort_id": [None, None, 0] * TINY.n_items,
        },
        schema_overrides={"cohort_id": pl.Int64},
    )
    candidates = CoverCandidates.from_table(table, images.reshape(-1, 3, 8, 8))
    exposure = CoverExposure.build(world, candidates.images, candidates.cover_ids)
    imp = exposure.impressions
    ctx = policy_context(candidates, imp["user_id"].to_numpy(), imp["item_id"].to_numpy())
    log = exposure.simulate(parse_policy("uniform").probabilities(ctx), seed=0)
    return world, table, images, candidates, log


def test_outcome_model_is_cross_fitted(setup):
    _, _, _, candidates, log = setup
    slots = candidates.slots_of(log["item_id"].to_numpy(), log["cover_id"].to_numpy())
    q = fit_outcome_oof(log, slots, candidates, OutcomeConfig(epochs=1, seed=0))
    assert q.shape == (log.height, 3) and ((q > 0) & (q < 1)).all()
    again = fit_outcome_oof(log, slots, candidates, OutcomeConfig(epochs=1, seed=0))
    np.testing.assert_array_equal(q, again)
    with pytest.raises(SchemaError, match="n_folds"):
        fit_outcome_oof(log, slots, candidates, OutcomeConfig(n_folds=1))


def test_evaluate_policies_reports_every_estimator_with_intervals(setup):
    _, _, _, candidates, log = setup
    config = OPEConfig(n_boot=200, outcome=OutcomeConfig(epochs=1))
    specs = ["generic", "original", "epsilon:0.5:original"]
    report = evaluate_policies(log, candidates, [parse_policy(s) for s in specs], config)
    assert report.n_rows == log.height and report.n_users == TINY.n_users
    generic = report.policies["generic"]
    assert set(generic.estimates) == {"ips", "snips", "dm", "dr", "dr_clipped", "switch_dr"}
    for est, value in generic.estimates.items():
        lo, hi = generic.ci95[est]
        assert lo <= value <= hi, est
    assert generic.diagnostics.max_weight == pytest.approx(3.0)
    assert generic.dr_lift_ci95[0] <= generic.dr_lift <= generic.dr_lift_ci95[1]
    assert report.policies["original"].dr_lift == 0.0  # the original cover's lift over itself
    assert report.policies["epsilon:0.5:original"].dr_lift != 0
    ips_only = evaluate_policies(
        log, candidates, [parse_policy("original")], OPEConfig(estimators=["ips"], n_boot=50)
    )
    assert (
        set(ips_only.policies["original"].estimates) == {"ips"}
        and ips_only.policies["original"].dr_lift is None
    )


def test_own_cohort_counts_the_rows_that_fall_back_to_the_generic_cover(setup, tmp_path):
    _, _, _, candidates, log = setup
    cohorts = pl.DataFrame({"user_id": np.arange(TINY.n_users), "cohort_id": np.arange(TINY.n_users) % 2})
    config = OPEConfig(estimators=["ips"], n_boot=50)
    report = evaluate_policies(log, candidates, [parse_policy("own_cohort")], config, user_cohorts=cohorts)
    odd_rows = int((log["user_id"] % 2 == 1).sum())  # items only have covers for cohort 0
    assert report.policies["own_cohort"].fallback_rows == odd_rows > 0
    from icg_rec.ope.evaluate import write_ope_report

    assert f"{odd_rows:,} row(s) had no cover" in write_ope_report(report, tmp_path).read_text()
    with pytest.raises(SchemaError, match="without a cohort"):
        evaluate_policies(log, candidates, [parse_policy("own_cohort")], config, cohorts.head(10))


def test_logs_without_propensities_are_refused_with_the_reason(setup):
    _, _, _, candidates, log = setup
    with pytest.raises(
        SchemaError, match=r"lacks \['propensity'\].*without the logging policy's probabilities"
    ):
        evaluate_policies(log.drop("propensity"), candidates, [parse_policy("original")])
    with pytest.raises(SchemaError, match=r"lacks \['cover_id', 'propensity'\]"):
        evaluate_policies(log.drop("propensity", "cover_id"), candidates, [parse_policy("original")])
    with pytest.raises(SchemaError, match="unknown estimator"):
        evaluate_policies(log, candidates, [parse_policy("original")], OPEConfig(estimators=["ipw"]))


def test_cli_reads_files_and_writes_the_report(setup, tmp_path, capsys):
    _, table, images, _, log = setup
    paths = []
    for row, image in enumerate(images.reshape(-1, 3, 8, 8)):
        path = tmp_path / "covers" / f"{row}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
        paths.append(f"covers/{row}.png")
    table.with_columns(image_path=pl.Series(paths)).write_csv(tmp_path / "candidates.csv")
    log.write_parquet(tmp_path / "log.parquet")
    argv = ["ope", "--log", str(tmp_path / "log.parquet"), "--candidates", str(tmp_path / "candidates.csv"),
            "--policies", "original", "generic", "--n-boot", "100", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "out" / "ope.json").read_text())
    assert set(report["policies"]) == {"original", "generic"}
    assert "generic" in (tmp_path / "out" / "report.md").read_text()
    assert "generic: dr" in capsys.readouterr().out

    log.drop("propensity").write_parquet(tmp_path / "shown.parquet")
    argv[2] = str(tmp_path / "shown.parquet")
    with pytest.raises(SchemaError, match="propensity"):
        main(argv)


def test_ope_stage_runs_under_run_stage(setup, tmp_path):
    from icg_rec.ope.stage import OPEOutput, OPEStageConfig, ope_stage, skip_reason
    from icg_rec.pipeline.stage import RAN, UP_TO_DATE, run_stage

    _, _, _, candidates, log = setup

    class LogInput:
        digest = "log-v1"

    def body(config, _log_input, folder):
        return ope_stage(config, log, candidates, folder)

    config = OPEStageConfig(policies=["original", "generic"], n_boot=50, outcome_epochs=1)
    first = run_stage("ope", body, config, {"log": LogInput()}, tmp_path / "ope", OPEOutput)
    assert first.status == RAN
    report = first.output.report()
    assert set(report["policies"]) == {"original", "generic"} and report["n_rows"] == log.height
    assert (
        run_stage("ope", body, config, {"log": LogInput()}, tmp_path / "ope", OPEOutput).status == UP_TO_DATE
    )
    assert skip_reason(log) is None
    assert "propensity column" in skip_reason(log.drop("propensity"))
    assert "cover_id / propensity" in skip_reason(log.drop("propensity", "cover_id"))
