import json

import numpy as np
import polars as pl
import pytest

from icg_rec.cli import main
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.data.sim import SimConfig
from icg_rec.errors import SchemaError
from icg_rec.quickstart import QuickstartConfig, run_quickstart
from icg_rec.ranking.cover_arms import read_cover_run

# the quickstart preset cut to seconds: a small world, every stage a step or two
TINY = """
[world]
n_users = 80
n_items = 40
n_cohorts = 2
[rewards.personalized]
epochs = 1
[rewards.relevance]
epochs = 2
[warmup.trainer]
steps = 2
batch_size = 4
sample_items = 2
[align.draft]
steps = 1
batch_size = 2
num_inference_steps = 2
grad_steps = 1
sample_pairs = 2
[cohorts]
n_cohorts = 2
[refresh]
num_inference_steps = 2
[lift.cover_arms]
n_folds = 2
[lift.cover_arms.lift]
seeds = [0]
n_boot = 20
"""


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "quickstart.toml"
    path.write_text(TINY)
    return QuickstartConfig.from_toml(path)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_config):
    out = tmp_path_factory.mktemp("quickstart")
    return out, run_quickstart(out, tiny_config)


def test_the_quickstart_is_the_pipeline_on_a_simworld(tiny_config):
    assert tiny_config.world == SimConfig(n_users=80, n_items=40, n_cohorts=2)
    assert tiny_config.run.warmup.trainer.steps == 2 and tiny_config.run.encode.image_size == 16


def test_quickstart_writes_the_promised_keys_and_files(tiny_run):
    out, result = tiny_run
    assert json.loads((out / "quickstart.json").read_text()) == json.loads(json.dumps(result))
    assert set(result["oracle_ctr"]) >= {"generic", "aligned_personalized", "original"}
    assert set(result) >= {"stages", "rewards", "covers", "lift", "ab", "oracle_ctr", "seconds", "config"}
    assert result["covers"] == {"items": 40, "cohorts": 2, "generated": 40 * 3, "cached": 0}
    assert result["config"]["world"]["image_size"] == 16  # the run's cover size
    manifest = pl.read_parquet(out / "refresh" / "manifest.parquet")
    assert manifest.height == 40 * 3  # every item: a generic cover and one per cohort
    sheets = sorted(p.name for p in (out / "refresh" / "contact_sheets").iterdir())
    assert sheets == ["cohort_-1.png", "cohort_0.png", "cohort_1.png"]
    for name in (
        "report.md",
        "run.json",
        "ab/spec.md",
        "ab/assignment.parquet",
        "lift/lift.json",
        "cohorts/cohorts.json",
    ):
        assert (out / name).is_file(), name
    assert "## Covers judged by SimWorld's oracle" in (out / "report.md").read_text()


def test_a_quickstart_rerun_finds_every_stage_up_to_date(tiny_run, tiny_config):
    out, _ = tiny_run
    result = run_quickstart(out, tiny_config)
    assert {e["status"] for n, e in result["stages"].items() if n != "ope"} == {"up to date"}


def test_ab_plan_command_reads_the_quickstart_outputs(tiny_run, tmp_path):
    out, _ = tiny_run
    interactions = tmp_path / "log.parquet"
    items = tmp_path / "items.parquet"
    pl.DataFrame({"user_id": [0, 0, 1, 1, 2, 2], "item_id": [0, 1, 0, 2, 1, 3], "label": [1.0, 0, 0, 1, 0, 0],
                  "timestamp": [0, 86_400, 0, 90_000, 10, 200_000]}).write_parquet(interactions)  # fmt: skip
    pl.read_parquet(out / "refresh" / "manifest.parquet").select("item_id").unique().with_columns(
        image_path=pl.lit("original.png")
    ).write_parquet(items)
    code = main(["ab", "plan", "--interactions", str(interactions), "--items", str(items),
                 "--manifest", str(out / "refresh" / "manifest.parquet"), "--out", str(tmp_path / "ab")])  # fmt: skip
    assert code == 0
    assert pl.read_parquet(tmp_path / "ab" / "covers_personalized.parquet").height == 40 * 2
    assert pl.read_parquet(tmp_path / "ab" / "covers_control.parquet").height == 40


def test_ab_plan_command_refuses_a_file_that_is_no_manifest(tiny_run, tmp_path):
    out, _ = tiny_run
    bogus, log = tmp_path / "bogus.parquet", tmp_path / "log.parquet"
    pl.DataFrame({"item_id": [1]}).write_parquet(bogus)
    pl.DataFrame({"user_id": [0, 1, 2], "label": [1.0, 0.0, 0.0], "timestamp": [0, 10, 20]}).write_parquet(
        log
    )
    with pytest.raises(ValueError, match=r"refresh manifest .*bogus.parquet has missing or mistyped column"):
        main(["ab", "plan", "--interactions", str(log), "--items", str(bogus), "--manifest", str(bogus),
              "--out", str(tmp_path / "ab")])  # fmt: skip


def test_the_quickstart_folder_reads_back_as_a_cover_run(tiny_run, tmp_path):
    out, _ = tiny_run
    run = read_cover_run(out)
    assert tuple(run.refreshed.images.shape) == (40 * 2, 3, 16, 16)  # every item x cohort, no generic
    assert run.user_cohorts.columns == ["user_id", "cohort_id"] and run.user_cohorts.height == 80
    assert run.quickstart_config["world"]["n_users"] == 80
    vectors = np.random.default_rng(1).normal(size=(80, 4))
    UserCohorts(CohortConfig(n_cohorts=2, seed=1)).fit(np.arange(80), vectors).save(tmp_path / "other")
    with pytest.raises(SchemaError, match=r"cohort\(s\) \[0, 1\] refreshed for other centroids"):
        read_cover_run(out, tmp_path / "other")
