import copy
import json
import logging
import shutil
import tomllib

import numpy as np
import polars as pl
import pytest
from PIL import Image

from icg_rec.cli import main
from icg_rec.errors import CheckpointError
from icg_rec.pipeline import run as run_module
from icg_rec.pipeline.config import RunConfig
from icg_rec.pipeline.presets import PRESETS, preset
from icg_rec.pipeline.run import STAGES, run_one, run_pipeline


def test_a_run_writes_every_stage_and_the_promised_keys(micro, micro_run):
    out, summary = micro_run
    assert list(summary["stages"]) == list(STAGES)
    assert {name: entry["status"] for name, entry in summary["stages"].items()} == {
        **{name: "ran" for name in STAGES},
        "ope": "skipped",
    }
    assert summary["stages"]["ope"]["reason"].startswith("the interactions log has no cover_id / propensity")
    assert set(summary) == {"stages", "data", "rewards", "align", "covers", "lift", "ab"}
    assert summary["covers"] == {"items": 12, "cohorts": 2, "generated": 12 * 3, "cached": 0}
    assert set(summary["lift"]) == {"no_cover", "original_cover", "personalized_cover"}
    assert all(set(arm) == {"auc", "auc_delta", "ci95"} for arm in summary["lift"].values())
    assert summary["ab"]["sample_size_per_arm"] > 0
    assert set(summary["rewards"]["baselines"]) == {"popularity", "id_mf"}
    assert json.loads((out / "run.json").read_text()) == json.loads(json.dumps(summary))
    report = (out / "report.md").read_text()
    for heading in (
        "## Stages",
        "## Personalized reward model",
        "## Covers",
        "## Ranker lift",
        "## A/B plan",
    ):
        assert heading in report
    assert "(refresh/contact_sheets/cohort_0.png)" in report and "(lift/roc.png)" in report
    assert RunConfig().with_values(tomllib.loads((out / "config.toml").read_text())) == micro[3]


def test_a_standalone_refresh_of_the_aligned_pipeline_makes_the_refresh_stages_covers(micro_run, tmp_path):
    out, _ = micro_run
    # no encoders given: the refresh rebuilds the colour grid and MiniLM that the folder records
    main(
        ["refresh", "--pipeline", str(out / "align" / "pipeline"), "--cohorts", str(out / "cohorts"),
         "--items", str(out / "prepare" / "items.parquet"), "--out", str(tmp_path), "--steps", "2", "--guidance", "1"]
    )  # fmt: skip
    made = pl.read_parquet(tmp_path / "manifest.parquet").sort("item_id", "cohort_id")
    stage = pl.read_parquet(out / "refresh" / "manifest.parquet").sort("item_id", "cohort_id")
    assert made["key"].to_list() == stage["key"].to_list()
    for ours, theirs in zip(made["path"], stage["path"], strict=True):
        # the stage reads the references as the encode stage's resized pixels, the command from the files:
        # the generator carries that rounding through (up to 2 levels on one item's covers here)
        cli, staged = (np.asarray(Image.open(path), dtype=np.int16) for path in (ours, theirs))
        assert np.abs(cli - staged).max() <= 2


def test_a_rerun_is_up_to_date_without_running_a_body(micro, micro_run, monkeypatch):
    folder, items, log, config = micro
    out, _ = micro_run

    def refuse(*args, **kwargs):
        raise AssertionError("an up-to-date stage ran")

    for name, spec in run_module.SPECS.items():
        monkeypatch.setitem(
            run_module.SPECS, name, run_module.StageSpec(refuse, spec.output, spec.inputs, spec.device)
        )
    summary = run_pipeline(items, log, out, config)
    assert {entry["status"] for name, entry in summary["stages"].items() if name != "ope"} == {"up to date"}


def test_changing_the_alignment_reruns_it_and_its_downstream_only(micro, micro_run, tmp_path):
    folder, items, log, config = micro
    out, _ = micro_run
    config = copy.deepcopy(config)
    config.align.draft.learning_rate *= 2
    statuses = {k: v["status"] for k, v in run_pipeline(items, log, out, config)["stages"].items()}
    assert statuses == {
        "prepare": "up to date", "encode": "up to date", "rewards": "up to date", "warmup": "up to date",
        "align": "ran", "cohorts": "up to date", "refresh": "ran", "lift": "ran", "ope": "skipped", "ab": "ran",
    }  # fmt: skip


def test_stages_chain_on_the_command_line(micro, tmp_path, capsys):
    folder, items, log, _ = micro
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match=r"stage prepare has not finished .*run `icg-rec stage prepare"):
        main(["stage", "encode", "--run", str(run), "--preset", "tiny"])
    prepare = ["stage", "prepare", "--run", str(run), "--items", str(items), "--interactions", str(log)]
    assert main([*prepare, "--preset", "tiny", "--config", str(folder / "micro.toml")]) == 0
    for name in STAGES[1:]:
        assert main(["stage", name, "--run", str(run)]) == 0
    summary = json.loads((run / "run.json").read_text())
    assert [summary["stages"][name]["status"] for name in STAGES] == ["ran"] * 8 + ["skipped", "ran"]
    assert main(["run", "--items", str(items), "--interactions", str(log), "--out", str(run), "--preset", "tiny",
                 "--config", str(folder / "micro.toml")]) == 0  # fmt: skip
    assert "prepare up to date; encode up to date" in capsys.readouterr().out


def test_a_heavy_stage_on_cpu_logs_its_estimate(micro_run, caplog):
    caplog.set_level(logging.INFO, logger="icg_rec")
    out, _ = micro_run
    (out / "warmup" / "stage.json").unlink()
    shutil.rmtree(out / "warmup" / "checkpoint")
    run_one("warmup", out)
    assert "[warmup] estimated at most" in caplog.text


def test_the_ope_stage_runs_on_a_log_of_randomized_covers(micro, tmp_path):
    folder, items, log, config = micro
    config = config.with_values({"ope": {"n_boot": 20, "outcome_epochs": 1}})
    rng = np.random.default_rng(0)
    logged = pl.read_csv(log)  # 2 cohorts: candidates original (0), generic (1), cohort covers (2, 3)
    logged = logged.with_columns(
        cover_id=pl.Series(rng.integers(0, 4, logged.height)), propensity=pl.lit(0.25)
    )
    logged.write_csv(tmp_path / "log.csv")
    summary = run_pipeline(items, tmp_path / "log.csv", tmp_path / "run", config)
    assert summary["stages"]["ope"]["status"] == "ran" and "ope" in summary
    assert "## Off-policy evaluation" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("name", PRESETS)
def test_presets_round_trip_through_toml(name, tmp_path):
    config = preset(name)
    (tmp_path / "run.toml").write_text(config.to_toml())
    assert RunConfig().with_toml(tmp_path / "run.toml") == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[warmup.trainer]\nseed = 3\n", r"sets \['warmup.trainer.seed'\]: set the run's seed once"),
        ("[warmup.trainer]\nstepz = 3\n", r"unknown key 'stepz' for WarmupConfig"),
        ("warmup = 3\n", r"warmup must be a table of WarmupStageConfig fields"),
        ('device = "tpu"\n', r"device must be one of \('cpu', 'cuda'\), got 'tpu'"),
    ],
)
def test_a_bad_run_config_is_refused(tmp_path, text, message):
    (tmp_path / "run.toml").write_text(text)
    with pytest.raises((CheckpointError, ValueError), match=message):
        RunConfig().with_toml(tmp_path / "run.toml")


def test_the_seed_reaches_every_stage():
    config = preset("tiny")
    config.seed = 7
    assert config.stage("warmup").trainer.seed == 7 and config.stage("align").draft.seed == 7
    assert config.stage("lift").cover_arms.seed == 7 and config.stage("cohorts").seed == 7
    assert config.warmup.trainer.seed == 0  # the run's own tables are left as they are


def test_the_gpu_preset_asks_for_its_model_folders(micro_run):
    from icg_rec.pipeline.encode import Encoded
    from icg_rec.pipeline.rewards import Rewards
    from icg_rec.pipeline.warmup import generator_config

    out, _ = micro_run
    with pytest.raises(
        ValueError, match=r"\[warmup.generator\] diffusion is empty: this preset expects a local"
    ):
        generator_config(preset("gpu").warmup, Encoded(out / "encode"), Rewards(out / "rewards"))


def test_the_generator_reads_its_widths_from_its_inputs(micro_run):
    from icg_rec.pipeline.warmup import Warmed

    out, _ = micro_run
    pipe = Warmed(out / "warmup").pipeline(run_module.Encoded(out / "encode"))
    assert pipe.refiner.config.user_dim == preset("tiny").rewards.personalized.dim
    assert pipe.unet.config.sample_size == preset("tiny").encode.image_size
