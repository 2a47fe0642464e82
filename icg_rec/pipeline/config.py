"""`RunConfig`: every stage's config, the run's seed, device and dtype; TOML with one table per stage.

    seed = 0
    device = "cpu"
    [rewards]
    weights = { aesthetic = 0.5, relevance = 1.0, personalized = 2.0 }
    [warmup.trainer]
    steps = 300

A stage table holds no seed: the run's `seed` is every stage's seed.
"""

import copy
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from icg_rec.cohorts.clustering import CohortConfig
from icg_rec.errors import CheckpointError
from icg_rec.experiment.plan import ABPlanConfig
from icg_rec.ope.stage import OPEStageConfig
from icg_rec.pipeline.align import AlignStageConfig, check_constraints
from icg_rec.pipeline.encode import EncodeConfig
from icg_rec.pipeline.lift import LiftStageConfig
from icg_rec.pipeline.prepare import PrepareConfig
from icg_rec.pipeline.refresh import RefreshConfig
from icg_rec.pipeline.rewards import RewardsConfig
from icg_rec.pipeline.toml import load_toml, override, to_toml
from icg_rec.pipeline.warmup import WarmupStageConfig

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class RunConfig:
    seed: int = 0  # every stage's seed (stage tables carry none of their own)
    device: str = "cpu"  # "cpu" or "cuda": where the generator trains and samples
    dtype: str = (
        "float32"  # "float32", "bfloat16" or "float16": the generator's training autocast and sampling
    )
    threads: int = 1  # torch CPU threads (tiny models: more threads on a shared 2-core box stalled)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)  # validation and split
    encode: EncodeConfig = field(default_factory=EncodeConfig)  # text and image embeddings, cover size
    rewards: RewardsConfig = field(default_factory=RewardsConfig)  # personalized (+ relevance) rewards
    warmup: WarmupStageConfig = field(default_factory=WarmupStageConfig)  # generator and its warm-up
    align: AlignStageConfig = field(default_factory=AlignStageConfig)  # reward alignment
    cohorts: CohortConfig = field(default_factory=CohortConfig)  # k-means over the reward user vectors
    refresh: RefreshConfig = field(default_factory=RefreshConfig)  # covers per (item, cohort)
    lift: LiftStageConfig = field(default_factory=LiftStageConfig)  # cover arms on the test rows
    ope: OPEStageConfig = field(
        default_factory=OPEStageConfig
    )  # off-policy evaluation (cover-aware logs only)
    ab: ABPlanConfig = field(default_factory=ABPlanConfig)  # the A/B plan

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuses settings that cannot run together, before any stage runs (the runner calls it again
        after a config was changed in Python).

        Raises:
            ValueError: an unknown device or dtype, or an alignment floor on a reward the run does not
                weight (see `check_constraints`).
        """
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        check_constraints(self.align, self.rewards.weights)

    def stage(self, name: str) -> Any:
        """The config of stage `name` with every `seed` field in it set to the run's seed."""
        config = copy.deepcopy(getattr(self, name))
        _set_seeds(config, self.seed)
        return config

    def to_toml(self) -> str:
        """The config as TOML (stage tables without seeds)."""
        return to_toml(self, skip_nested=("seed",))

    def with_toml(self, path: str | Path) -> "RunConfig":
        """A copy with the values of a TOML file set (a stage table sets only the keys it names).

        Raises:
            CheckpointError: the file is missing or invalid, has an unknown key, or sets a seed in a
                stage table.
        """
        return self.with_values(load_toml(path), source=str(path))

    def with_values(self, values: dict[str, Any], source: str = "config") -> "RunConfig":
        """A copy with the values of a parsed TOML document set (see `with_toml`)."""
        if nested := _nested_seeds(values):
            raise CheckpointError(f"{source} sets {nested}: set the run's seed once, at the top level")
        config = override(self, values, source=source)
        config.check()
        return config


def _set_seeds(config: Any, seed: int) -> None:
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            _set_seeds(value, seed)
        elif f.name == "seed":
            setattr(config, f.name, seed)


def _nested_seeds(values: dict, path: str = "") -> list[str]:
    found = []
    for key, value in values.items():
        if isinstance(value, dict):
            found += _nested_seeds(value, f"{path}{key}.")
        elif key == "seed" and path:
            found.append(f"{path}seed")
    return found
