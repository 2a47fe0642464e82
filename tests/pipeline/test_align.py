"""The align stage: constrained DRaFT validated on held-out users of the reward model."""

import copy
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from icg_rec.alignment import RewardAligner
from icg_rec.errors import CheckpointError
from icg_rec.io import file_sha256
from icg_rec.pipeline.align import align, audience
from icg_rec.pipeline.config import RunConfig
from icg_rec.pipeline.presets import PRESETS, preset
from icg_rec.pipeline.report import write_report
from icg_rec.pipeline.run import finished, run_one, run_pipeline

UPSTREAM = ("prepare", "encode", "rewards", "warmup")
FLOORS = {"relevance": 0.9, "aesthetic": 1.0}
HELD_OUT = [4, 5, 9, 16, 18, 22, 26, 29]  # the tiny preset's 8 held-out users of the micro run, seed 0
KEPT_STEP = 2  # the micro run's last step meets both floors with a higher personalized reward


@pytest.fixture
def fits(monkeypatch):
    """Every RewardAligner.fit call's (config, audience, held-out pairs), the real fit still running."""
    calls, real = [], RewardAligner.fit

    def spy(self, items, users, output_dir=None, resume=False, held_out=None, monitors=None):
        calls.append((self.config, users, held_out))
        return real(self, items, users, output_dir, resume, held_out, monitors)

    monkeypatch.setattr(RewardAligner, "fit", spy)
    return calls


def test_the_default_alignment_is_constrained_on_every_preset():
    for name in PRESETS:
        config = preset(name).align
        assert (config.method, config.draft.constraints, config.draft.dual_lr) == ("draft", FLOORS, 10.0)
        assert config.draft.keep == "best"
    assert (preset("tiny").align.held_out_users, preset("tiny").align.held_out_items) == (8, 2)
    assert (preset("cpu").align.held_out_users, preset("cpu").align.held_out_items) == (16, 4)


def test_the_stage_trains_on_every_user_but_the_held_out_ones_and_passes_the_floors(
    micro, micro_run, fits, tmp_path
):
    out, _ = micro_run
    config = micro[3].stage("align")
    aligned = align(config, *(finished(name, out) for name in UPSTREAM), tmp_path)
    (trainer, users, held_out), = fits  # fmt: skip
    assert (trainer.constraints, trainer.dual_lr, trainer.keep) == (FLOORS, 10.0, "best")
    every = finished("rewards", out).personalized().user_ids_
    trained, held = users.user_ids.numpy(), held_out.users.user_ids.numpy()
    assert np.intersect1d(trained, held).size == 0
    assert np.array_equal(np.union1d(trained, held), every) and len(trained) == len(every) - 8
    assert held.tolist() == [u for u in HELD_OUT for _ in range(2)] and len(held_out) == 16
    pairs = json.loads((tmp_path / "held_out.json").read_text())
    assert pairs["user_ids"] == held.tolist() and pairs["noise_seed"] == 20_000
    report = json.loads((tmp_path / "tradeoff.json").read_text())
    assert report["constraints"] == FLOORS and [row["step"] for row in report["validations"]] == [0, 2]
    assert aligned.folder == tmp_path and (tmp_path / "tradeoff.md").is_file()


def test_a_run_reports_the_kept_step_and_the_shares_of_warm_up(micro_run):
    out, summary = micro_run
    aligned = summary["align"]
    assert (aligned["keep"], aligned["kept_step"], aligned["steps"], aligned["pairs"]) == (
        "best",
        KEPT_STEP,
        2,
        16,
    )
    assert aligned["objective"] == "personalized"
    assert aligned["floors"] == FLOORS and list(aligned["rewards"]) == ["personalized", *FLOORS]
    for row in aligned["rewards"].values():  # relevance starts below 0 after 5 warm-up steps: no share
        assert row["share"] == (row["kept"] / row["warmup"] if row["warmup"] > 0 else None)
    assert [row["share"] is None for row in aligned["rewards"].values()] == [False, True, False]
    assert finished("align", out).tradeoff()["kept"] == [0, 2].index(KEPT_STEP)
    report = (out / "report.md").read_text()
    assert (
        f"## Alignment (held-out users)\n\nDRaFT kept step {KEPT_STEP} of 2: the best personalized" in report
    )
    assert "| relevance | " in report and "`align/tradeoff.md`" in report


def test_the_report_says_when_the_warm_up_is_kept_and_when_a_share_is_undefined(tmp_path):
    rewards = {
        "personalized": {"warmup": 0.2, "kept": 0.2, "share": 1.0},
        "relevance": {"warmup": -0.1, "kept": -0.05, "share": None},
    }
    aligned = {"keep": "best", "kept_step": 0, "steps": 16, "pairs": 16, "objective": "personalized",
               "floors": {"relevance": 0.9}, "rewards": rewards}  # fmt: skip
    text = write_report(tmp_path, {"stages": {}, "align": aligned})
    assert (
        "DRaFT kept step 0 of 16: the best personalized reward among the validations meeting every floor, "
        "on 16 held-out (item, user) pairs. Step 0 is the warm-up itself. Every validation: `align/tradeoff.md`."
    ) in text
    assert "| personalized | 0.2000 | 0.2000 | 1.000 |  |" in text
    assert "| relevance | -0.1000 | -0.0500 | n/a (warm-up <= 0) | 0.9 |" in text
    last = write_report(tmp_path, {"stages": {}, "align": aligned | {"keep": "last", "kept_step": 16}})
    assert (
        'DRaFT kept step 16 of 16: the last state (keep = "last"), on 16 held-out (item, user) pairs. Every'
        in last
    )


def test_the_kept_state_survives_an_interrupted_stage(micro, micro_run, tmp_path, monkeypatch):
    out, _ = micro_run
    values = {"align": {"draft": {"steps": 6, "checkpoint_every": 2, "validate_every": 2}}}
    config = micro[3].with_values(values)
    runs = {}
    for name in ("whole", "split"):
        runs[name] = tmp_path / name
        for stage in UPSTREAM:
            shutil.copytree(out / stage, runs[name] / stage)
    assert run_one("align", runs["whole"], config=config)["stages"]["align"]["status"] == "ran"
    calls, real = [], RewardAligner._step

    def stop_at_step_4(self, *args):
        calls.append(self.step_)
        if self.step_ == 4:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(RewardAligner, "_step", stop_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run_one("align", runs["split"], config=config)
    monkeypatch.setattr(RewardAligner, "_step", real)
    assert calls == [0, 1, 2, 3, 4]  # the CPU probe (3 steps, a checkpoint), then steps 3 and 4
    assert run_one("align", runs["split"])["stages"]["align"]["status"] == "resumed"
    whole, split = (json.loads((runs[n] / "align" / "tradeoff.json").read_text()) for n in runs)
    assert split == whole and [row["step"] for row in whole["validations"]] == [0, 2, 3, 4, 6]
    assert whole["kept"] != len(whole["validations"]) - 1  # the kept state is not the last one
    files = sorted(
        p.relative_to(runs["whole"]) for p in (runs["whole"] / "align" / "pipeline").rglob("*.safetensors")
    )
    assert files and all(file_sha256(runs["split"] / f) == file_sha256(runs["whole"] / f) for f in files)


def test_without_held_out_users_or_with_dpo_every_user_trains(micro, micro_run):
    out, _ = micro_run
    rewards, encoded = finished("rewards", out), finished("encode", out)
    every = rewards.personalized().user_ids_
    base = micro[3].align
    for config in (replace(base, held_out_users=0), replace(base, method="dpo")):
        users, held_out = audience(config, rewards, encoded, 12, 0)
        assert held_out is None and users.user_ids.tolist() == every.tolist()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"rewards": {"weights": {"aesthetic": 0.5, "personalized": 2.0}}},
            r"align.draft.constraints puts a floor on \['relevance'\], which rewards.weights .* does not "
            r"weight.*\[align.draft\] constraints = \{ aesthetic = 1.0 \}\)",
        ),
        (
            {"rewards": {"weights": {"personalized": 2.0}}},
            r"a floor on \['aesthetic', 'relevance'\].*\[align.draft\] constraints = \{\}\)",
        ),
        (
            {"align": {"held_out_users": 0}},
            r"constraints are measured on held-out users: set align.held_out_users",
        ),
        (
            {"align": {"held_out_users": -1}},
            r"align.held_out_users must be >= 0 and align.held_out_items >= 1",
        ),
        ({"align": {"held_out_items": 0}}, r"got 16 and 0"),
    ],
)
def test_floors_the_run_cannot_measure_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        RunConfig().with_values(values)


def test_without_floors_or_with_dpo_unweighted_rewards_are_fine():
    public_free = {"rewards": {"weights": {"personalized": 2.0}}}
    assert (
        RunConfig()
        .with_values(public_free | {"align": {"draft": {"constraints": {}}}})
        .align.draft.constraints
        == {}
    )
    assert RunConfig().with_values(public_free | {"align": {"method": "dpo"}}).align.method == "dpo"
    config = RunConfig().with_values({"align": {"held_out_users": 0, "draft": {"constraints": {}}}})
    assert config.align.held_out_users == 0


def test_constraints_are_refused_for_dpo():
    with pytest.raises(CheckpointError, match=r"unknown key 'constraints' for DPOConfig"):
        RunConfig().with_values({"align": {"method": "dpo", "dpo": {"constraints": FLOORS}}})


def test_a_config_changed_in_python_is_checked_before_any_stage_runs(micro, tmp_path):
    _, items, log, config = micro
    config = copy.deepcopy(config)
    config.rewards.weights = {"aesthetic": 0.5, "personalized": 2.0}  # after the config was checked
    with pytest.raises(ValueError, match=r"puts a floor on \['relevance'\]"):
        run_pipeline(items, log, tmp_path / "run", config)
    with pytest.raises(ValueError, match=r"puts a floor on \['relevance'\]"):
        run_one("prepare", tmp_path / "run", config=config)
    assert not (tmp_path / "run").exists()


def test_the_stage_refuses_what_its_inputs_cannot_give(micro, micro_run, tmp_path):
    out, _ = micro_run
    inputs = [finished(name, out) for name in UPSTREAM]
    base = micro[3].stage("align")
    users = len(inputs[2].personalized().user_ids_)
    bad = [
        (replace(base, draft=replace(base.draft, constraints={"novelty": 0.9})), r"a floor on \['novelty'\]"),
        (replace(base, held_out_users=users), rf"held_out_users \({users}\) must leave users to train on: the reward model knows {users} users"),
        (replace(base, held_out_items=13), r"align.held_out_items \(13\) must be <= the 12 items"),
    ]  # fmt: skip
    for config, message in bad:
        with pytest.raises(ValueError, match=message):
            align(config, *inputs, tmp_path)
    assert list(tmp_path.iterdir()) == []
