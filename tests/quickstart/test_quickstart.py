import json

import numpy as np
import polars as pl
import pytest

from icg_rec.cli import main
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.errors import SchemaError
from icg_rec.quickstart import QuickstartConfig, run_quickstart
from icg_rec.ranking.cover_arms import read_cover_run

TINY = QuickstartConfig(
    n_users=80,
    n_items=40,
    n_cohorts=2,
    warmup_steps=2,
    align_steps=1,
    sample_steps=2,
    grad_steps=1,
    lift_seeds=(0,),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    return out, run_quickstart(out, TINY)


def test_quickstart_writes_the_promised_keys_and_files(tiny_run):
    out, result = tiny_run
    assert json.loads((out / "quickstart.json").read_text()) == json.loads(json.dumps(result))
    assert set(result["oracle_ctr"]) >= {"generic", "aligned_personalized", "original"}
    assert set(result["ranker_lift"]) >= {"relaimpr", "ci95"}
    assert result["ab"]["sample_size_per_arm"] > 0
    assert result["seconds"] > 0
    manifest = pl.read_parquet(out / "refresh" / "manifest.parquet")
    assert manifest.height == 40 * 3  # every item: a generic cover and one per cohort
    assert sorted(p.name for p in (out / "contact_sheets").iterdir()) == ["cohort_0.png", "cohort_1.png"]
    for name in (
        "report.md",
        "ab/spec.md",
        "ab/assignment.parquet",
        "lift/lift.json",
        "cohorts/cohorts.json",
    ):
        assert (out / name).is_file(), name


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
    bogus = tmp_path / "bogus.parquet"
    pl.DataFrame({"item_id": [1]}).write_parquet(bogus)
    with pytest.raises(ValueError, match=r"manifest is missing column\(s\) \['cohort_id', 'key', 'path'\]"):
        main(["ab", "plan", "--interactions", str(bogus), "--items", str(bogus), "--manifest", str(bogus),
              "--out", str(tmp_path / "ab")])  # fmt: skip


def test_lift_reads_the_quickstart_covers_and_repeats_its_cover_arms(tiny_run, tmp_path, capsys):
    from eval.lift import main as lift_main  # in-process: `python -m pytest` runs from the repository root

    out, result = tiny_run
    assert set(result["ranker_lift"]["auc"]) == {"no_cover", "original_cover", "personalized_cover"}
    argv = ["--dataset", "simworld", "--covers", str(out), "--seeds", "0", "--image-pca", "8"]
    assert lift_main([*argv, "--n-boot", "20", "--out", str(tmp_path)]) == 0
    assert f"wrote {tmp_path / 'lift.json'}" in capsys.readouterr().out
    summary = json.loads((tmp_path / "lift.json").read_text())
    assert summary["covers"] == str(out) and set(summary["lift"]) == {"original_cover", "personalized_cover"}
    # the same world (from quickstart.json), split, covers, cohorts, reward scorer and ranker seed
    assert {name: arm["auc"] for name, arm in summary["arms"].items()} == result["ranker_lift"]["auc"]


def test_the_quickstart_folder_reads_back_as_a_cover_run(tiny_run, tmp_path):
    out, _ = tiny_run
    run = read_cover_run(out)
    assert tuple(run.refreshed.images.shape) == (40 * 2, 3, 16, 16)  # every item x cohort, no generic
    assert run.user_cohorts.columns == ["user_id", "cohort_id"] and run.user_cohorts.height == 80
    assert run.quickstart_config["n_users"] == 80
    vectors = np.random.default_rng(1).normal(size=(80, 4))
    UserCohorts(CohortConfig(n_cohorts=2, seed=1)).fit(np.arange(80), vectors).save(tmp_path / "other")
    with pytest.raises(SchemaError, match=r"cohort\(s\) \[0, 1\] refreshed for other centroids"):
        read_cover_run(out, tmp_path / "other")
