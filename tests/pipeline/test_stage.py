import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from icg_rec.errors import CheckpointError
from icg_rec.io import write_folder
from icg_rec.pipeline.stage import (
    RAN,
    RESUMED,
    STAGE_FILE,
    STARTED_FILE,
    UP_TO_DATE,
    StageOutput,
    config_hash,
    run_stage,
)


@dataclass
class Config:
    value: int = 1  # written into the output


@dataclass(frozen=True)
class Numbers(StageOutput):
    def number(self) -> int:
        return self.read_json("number.json")


@dataclass(frozen=True)
class External:
    digest: str  # what an external input (e.g. hashed tables) looks like to run_stage


class Counting:
    """A stage body that counts its calls: writes upstream number + config value."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, config: Config, upstream, folder: Path) -> Numbers:
        self.calls += 1
        base = upstream.number() if isinstance(upstream, Numbers) else 0
        (folder / "number.json").write_text(json.dumps(base + config.value))
        return Numbers(folder)


def _chain(run: Path, configs: dict[str, Config], bodies: dict[str, Counting]) -> dict[str, str]:
    statuses, upstream = {}, External("sources-v1")
    for name in ("a", "b", "c"):
        result = run_stage(name, bodies[name], configs[name], {"up": upstream}, run / name, Numbers)
        statuses[name], upstream = result.status, result.output
    return statuses


def test_a_rerun_is_up_to_date_without_calling_the_body(tmp_path):
    bodies = {k: Counting() for k in "abc"}
    configs = {k: Config() for k in "abc"}
    assert _chain(tmp_path, configs, bodies) == {"a": RAN, "b": RAN, "c": RAN}
    assert _chain(tmp_path, configs, bodies) == {"a": UP_TO_DATE, "b": UP_TO_DATE, "c": UP_TO_DATE}
    assert [b.calls for b in bodies.values()] == [1, 1, 1]
    assert Numbers(tmp_path / "c").number() == 3
    record = json.loads((tmp_path / "b" / STAGE_FILE).read_text())
    assert set(record) == {
        "name",
        "config_hash",
        "config",
        "inputs",
        "versions",
        "seconds",
        "outputs",
        "digest",
    }
    assert record["inputs"] == {"up": Numbers(tmp_path / "a").digest} and record["config"] == {"value": 1}
    assert list(record["outputs"]) == ["number.json"] and record["versions"]["polars"]
    assert not (tmp_path / "b" / STARTED_FILE).exists()


def test_changing_one_config_reruns_that_stage_and_its_downstream_only(tmp_path):
    bodies = {k: Counting() for k in "abc"}
    _chain(tmp_path, {k: Config() for k in "abc"}, bodies)
    changed = {"a": Config(), "b": Config(value=5), "c": Config()}
    assert _chain(tmp_path, changed, bodies) == {"a": UP_TO_DATE, "b": RAN, "c": RAN}
    assert [b.calls for b in bodies.values()] == [1, 2, 2]
    assert Numbers(tmp_path / "c").number() == 7


def test_changed_external_inputs_rerun_everything(tmp_path):
    bodies = {k: Counting() for k in "abc"}
    _chain(tmp_path, {k: Config() for k in "abc"}, bodies)
    result = run_stage("a", bodies["a"], Config(), {"up": External("sources-v2")}, tmp_path / "a", Numbers)
    assert result.status == RAN


def test_a_corrupted_output_makes_the_stage_rerun(tmp_path):
    bodies = {k: Counting() for k in "abc"}
    configs = {k: Config() for k in "abc"}
    _chain(tmp_path, configs, bodies)
    (tmp_path / "b" / "number.json").write_text("99")
    with pytest.raises(CheckpointError, match=r"output 'number.json' does not match its sha256"):
        Numbers(tmp_path / "b").number()
    assert _chain(tmp_path, configs, bodies) == {"a": UP_TO_DATE, "b": RAN, "c": UP_TO_DATE}
    assert Numbers(tmp_path / "b").number() == 2


def test_an_interrupted_stage_resumes_from_its_checkpoint(tmp_path):
    seen = []

    def body(config, upstream, folder):
        checkpoint = folder / "checkpoint.json"
        step = json.loads(checkpoint.read_text()) if checkpoint.exists() else 0
        seen.append(step)
        while step < 4:
            step += 1
            checkpoint.write_text(json.dumps(step))
            if step == 2 and len(seen) == 1:
                raise KeyboardInterrupt  # killed after two steps
        (folder / "number.json").write_text(json.dumps(step))
        return Numbers(folder)

    with pytest.raises(KeyboardInterrupt):
        run_stage("long", body, Config(), {"up": External("x")}, tmp_path / "long", Numbers)
    assert not (tmp_path / "long" / STAGE_FILE).exists() and (tmp_path / "long" / STARTED_FILE).exists()
    result = run_stage("long", body, Config(), {"up": External("x")}, tmp_path / "long", Numbers)
    assert result.status == RESUMED and seen == [0, 2] and result.output.number() == 4


def test_an_unfinished_folder_of_another_config_is_wiped(tmp_path):
    def interrupted(config, upstream, folder):
        (folder / "stale.bin").write_bytes(b"old")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage("s", interrupted, Config(), {"up": External("x")}, tmp_path / "s", Numbers)
    result = run_stage("s", Counting(), Config(value=2), {"up": External("x")}, tmp_path / "s", Numbers)
    assert result.status == RAN and not (tmp_path / "s" / "stale.bin").exists()
    assert list(result.output.record()["outputs"]) == ["number.json"]


def test_a_rerun_after_a_finished_run_starts_in_an_empty_folder(tmp_path):
    run_stage("s", Counting(), Config(), {"up": External("x")}, tmp_path / "s", Numbers)
    (tmp_path / "s" / "leftover.txt").write_text("from an older version")
    result = run_stage("s", Counting(), Config(value=3), {"up": External("x")}, tmp_path / "s", Numbers)
    assert result.status == RAN and not (tmp_path / "s" / "leftover.txt").exists()


def test_a_body_must_return_its_output_type(tmp_path):
    with pytest.raises(CheckpointError, match=r"stage s returned None; expected a Numbers"):
        run_stage(
            "s", lambda config, up, folder: None, Config(), {"up": External("x")}, tmp_path / "s", Numbers
        )
    assert not (tmp_path / "s" / STAGE_FILE).exists()


def test_an_unfinished_stage_output_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="has no stage.json: the stage has not finished"):
        _ = Numbers(tmp_path).digest
    run_stage("s", Counting(), Config(), {"up": External("x")}, tmp_path / "s", Numbers)
    with pytest.raises(CheckpointError, match=r"recorded no output 'model'"):
        Numbers(tmp_path / "s").path("model")


def test_the_config_hash_follows_the_fields():
    assert config_hash(Config(1)) == config_hash(Config(1)) != config_hash(Config(2))
    with pytest.raises(TypeError, match="must be a dataclass instance, got dict"):
        config_hash({"value": 1})


def test_a_body_that_saves_its_folder_as_a_set_is_recorded(tmp_path):
    """Cohorts and the A/B plan save into the stage folder itself through write_folder, which replaces it."""

    def body(config: Config, upstream, folder: Path) -> Numbers:
        write_folder(folder, lambda tmp: (tmp / "number.json").write_text(json.dumps(config.value)))
        return Numbers(folder)

    result = run_stage("a", body, Config(7), {"up": External("v1")}, tmp_path / "a", Numbers)
    assert result.status == RAN and result.output.number() == 7
    assert not (tmp_path / "a" / STARTED_FILE).exists()
    assert (
        run_stage("a", body, Config(7), {"up": External("v1")}, tmp_path / "a", Numbers).status == UP_TO_DATE
    )
