"""The stage pipeline: prepare -> encode -> rewards -> warmup -> align -> cohorts -> refresh -> lift -> ope -> ab.

`run_pipeline(items, interactions, out, preset("tiny"))` runs every stage on your own catalogue into one
run folder; each stage is also `icg-rec stage <name> --run RUN`. Importing the package is light: each
name below imports its module (torch, diffusers, ...) on first use.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icg_rec.pipeline.config import RunConfig
    from icg_rec.pipeline.presets import PRESETS, preset
    from icg_rec.pipeline.run import STAGES, run_one, run_pipeline
    from icg_rec.pipeline.stage import StageOutput, run_stage

_EXPORTS = {
    "RunConfig": "config",
    "PRESETS": "presets",
    "preset": "presets",
    "STAGES": "run",
    "run_one": "run",
    "run_pipeline": "run",
    "StageOutput": "stage",
    "run_stage": "stage",
}
__all__ = ["PRESETS", "STAGES", "RunConfig", "StageOutput", "preset", "run_one", "run_pipeline", "run_stage"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'icg_rec.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(f"icg_rec.pipeline.{_EXPORTS[name]}"), name)
