"""The run: every stage in order in one folder, skipped where up to date, then run.json and report.md.

RUN/config.toml        the resolved RunConfig (written by the first command, read by the later ones)
RUN/<stage>/           one folder per stage, with stage.json when it finished
RUN/run.json           stages (name -> seconds, status), rewards, covers, lift, ab (+ ope when run, + align
                       when DRaFT validated on held-out users: the kept step and rewards vs warm-up)
RUN/report.md          stage times, reward metrics, the kept alignment, contact sheets, lift table and
                       plots, A/B spec
"""

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icg_rec.data.contract import ColumnMapping
from icg_rec.errors import CheckpointError
from icg_rec.io import atomic_write, read_json, write_json
from icg_rec.ope.stage import OPEOutput, skip_reason
from icg_rec.pipeline.ab import Planned, plan
from icg_rec.pipeline.align import Aligned, align
from icg_rec.pipeline.cohorts import Cohorts, fit_cohorts
from icg_rec.pipeline.config import RunConfig
from icg_rec.pipeline.encode import Encoded, encode
from icg_rec.pipeline.lift import Lifted, lift
from icg_rec.pipeline.ope import ope
from icg_rec.pipeline.prepare import Prepared, Sources, prepare
from icg_rec.pipeline.refresh import Refreshed, refresh
from icg_rec.pipeline.report import write_report
from icg_rec.pipeline.rewards import Rewards, train_rewards
from icg_rec.pipeline.stage import STAGE_FILE, StageOutput, run_stage
from icg_rec.pipeline.warmup import Warmed, warmup

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.toml"
SKIPPED = "skipped"


@dataclass(frozen=True)
class StageSpec:
    """How the runner calls a stage."""

    body: Any  # (config, *inputs, folder[, device, dtype]) -> output
    output: type[StageOutput]  # the stage's typed output
    inputs: tuple[str, ...]  # upstream stages ("sources": the external inputs), in the body's order
    device: bool = False  # the body takes device=
    dtype: bool = False  # the body takes dtype= (the generator's)


SPECS: dict[str, StageSpec] = {
    "prepare": StageSpec(prepare, Prepared, ("sources",)),
    "encode": StageSpec(encode, Encoded, ("prepare",)),
    "rewards": StageSpec(train_rewards, Rewards, ("prepare", "encode"), device=True),
    "warmup": StageSpec(warmup, Warmed, ("prepare", "encode", "rewards"), device=True, dtype=True),
    "align": StageSpec(align, Aligned, ("prepare", "encode", "rewards", "warmup"), device=True, dtype=True),
    "cohorts": StageSpec(fit_cohorts, Cohorts, ("encode", "rewards")),
    "refresh": StageSpec(
        refresh, Refreshed, ("prepare", "encode", "align", "cohorts"), device=True, dtype=True
    ),
    "lift": StageSpec(lift, Lifted, ("prepare", "encode", "rewards", "cohorts", "refresh")),
    "ope": StageSpec(ope, OPEOutput, ("prepare", "encode", "rewards", "cohorts", "refresh"), device=True),
    "ab": StageSpec(plan, Planned, ("prepare", "refresh")),
}
STAGES = tuple(SPECS)  # prepare encode rewards warmup align cohorts refresh lift ope ab


def run_pipeline(
    items: Any,
    interactions: Any,
    out: str | Path,
    config: RunConfig | None = None,
    columns: ColumnMapping | None = None,
) -> dict:
    """Runs every stage into `out` (up-to-date stages are skipped) and writes run.json and report.md.

    Args:
        items: the items table: a CSV / parquet path or a polars / pandas / pyarrow table
            (item_id, title, image_path relative to the table's folder or absolute, optional text / genres).
        interactions: the log (user_id, item_id, label, timestamp, optional cover_id / propensity).
        out: the run folder.
        config: the run's settings (default: the `cpu` preset, RunConfig()).
        columns: contract name -> your column name, per table.

    Returns:
        The content of run.json.
    """
    out = Path(out)
    config = config or RunConfig()
    config.check()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / CONFIG_FILE, lambda tmp: tmp.write_text(config.to_toml()))
    outputs: dict[str, Any] = {"sources": Sources.read(items, interactions, columns)}
    statuses = {name: _run(name, config, outputs, out) for name in STAGES}
    return write_run(out, statuses)


def run_one(
    name: str,
    out: str | Path,
    sources: Sources | None = None,
    config: RunConfig | None = None,
    device: str | None = None,
) -> dict:
    """Runs one stage of a run folder from its upstream stages' folders, then rewrites run.json.

    Args:
        name: a stage of STAGES.
        out: the run folder.
        sources: the validated items and log (the `prepare` stage only).
        config: the run's settings; written to RUN/config.toml. None reads RUN/config.toml.
        device: overrides the config's device.

    Returns:
        The content of run.json.
    """
    out = Path(out)
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {list(STAGES)}")
    if config is not None:
        config.check()
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / CONFIG_FILE, lambda tmp: tmp.write_text(config.to_toml()))
    config = read_config(out)
    if device is not None:
        config.device = device
    outputs: dict[str, Any] = {"sources": sources}
    for upstream in SPECS[name].inputs:
        if upstream != "sources":
            outputs[upstream] = finished(upstream, out)
    if name == "prepare" and sources is None:
        raise ValueError("the prepare stage reads the items and the log: give --items and --interactions")
    previous = read_json(out / "run.json")["stages"] if (out / "run.json").is_file() else {}
    return write_run(out, {**previous, name: _run(name, config, outputs, out)})


def read_config(out: str | Path) -> RunConfig:
    """The RunConfig of a run folder (RUN/config.toml)."""
    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{out} holds no {CONFIG_FILE}: start the run with `icg-rec run` or `icg-rec stage prepare`"
        )
    return RunConfig().with_toml(path)


def finished(name: str, out: str | Path) -> StageOutput:
    """The typed output of a finished stage of a run folder.

    Raises:
        CheckpointError: the stage has not finished there (no stage.json), naming the command to run.
    """
    folder = Path(out) / name
    if not (folder / STAGE_FILE).is_file():
        raise CheckpointError(
            f"stage {name} has not finished in {out}: run `icg-rec stage {name} --run {out}` first"
        )
    return SPECS[name].output(folder)


def write_run(out: Path, statuses: dict[str, dict]) -> dict:
    """run.json and report.md from the stage folders that finished."""
    summary = run_summary(out, statuses)
    write_json(out / "run.json", summary)
    text = write_report(out, summary)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(text))
    return summary


def run_summary(out: Path, statuses: dict[str, dict]) -> dict:
    """What run.json holds: stages, rewards, covers, lift and ab (+ ope, align), from each finished stage."""
    done = {name for name in SPECS if (out / name / STAGE_FILE).is_file()}
    if statuses.get("ope", {}).get("status") == SKIPPED:
        done.discard("ope")  # an older run's report is not this log's
    summary: dict[str, Any] = {"stages": statuses}
    if "prepare" in done:
        summary["data"] = Prepared(out / "prepare").summary()
    if "rewards" in done:
        summary["rewards"] = Rewards(out / "rewards").metrics()
    if "align" in done and (aligned := Aligned(out / "align").summary()) is not None:
        summary["align"] = aligned
    if "refresh" in done:
        covers = Refreshed(out / "refresh").summary()
        summary["covers"] = {key: covers[key] for key in ("items", "cohorts", "generated", "cached")}
    if "lift" in done:
        report = Lifted(out / "lift").summary()
        base = report["baseline"]
        summary["lift"] = {
            arm: {
                "auc": values["auc"],
                "auc_delta": report["lift"][arm]["auc_delta"] if arm != base else 0.0,
                "ci95": report["lift"][arm]["ci95"] if arm != base else [0.0, 0.0],
            }
            for arm, values in report["arms"].items()
        }
    if "ope" in done:
        summary["ope"] = OPEOutput(out / "ope").report()
    if "ab" in done:
        spec = Planned(out / "ab").spec()
        keys = ("sample_size_per_arm", "sample_size_per_arm_without_cuped", "duration_days", "mde_at_available_users",
                "users_in_experiment", "baseline_ctr")  # fmt: skip
        summary["ab"] = {key: spec[key] for key in keys}
    return summary


def _run(name: str, config: RunConfig, outputs: dict[str, Any], out: Path) -> dict:
    """Runs (or skips) one stage, records its output in `outputs`, logs and returns its status."""
    start = time.perf_counter()
    if name == "ope" and (reason := skip_reason(outputs["prepare"].test())):
        logger.info("[ope] skipped: %s", reason)
        return {"seconds": 0.0, "status": SKIPPED, "reason": reason}
    spec = SPECS[name]
    body = spec.body
    if spec.device:
        body = functools.partial(body, device=config.device)
    if spec.dtype:
        body = functools.partial(body, dtype=config.dtype)
    import torch

    torch.set_num_threads(config.threads)
    inputs = {key: outputs[key] for key in spec.inputs}
    result = run_stage(name, body, config.stage(name), inputs, out / name, spec.output)
    outputs[name] = result.output
    record = result.output.record()
    entry = {
        "seconds": round(time.perf_counter() - start, 1),
        "status": result.status,
        "compute_seconds": record["seconds"],
    }
    logger.info("[%s] %s (%.1f s)", name, result.status, entry["seconds"])
    return entry
