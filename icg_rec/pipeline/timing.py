"""Heavy stages on a CPU: time a few steps, log the estimate, and checkpoint every few minutes."""

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROBE_STEPS = 3  # steps timed before the estimate is logged
CHECKPOINT_SECONDS = 120.0  # an interrupted CPU stage loses about this much work at most


def fit_with_estimate(
    fit: Callable[[Any, bool], None],
    config: Any,
    checkpoint: Path,
    device: str,
    what: str,
    steps_field: str = "steps",
) -> None:
    """Runs `fit(config, resume)` to the end; on a CPU, times `PROBE_STEPS` steps first.

    The probe runs `fit` with `PROBE_STEPS` steps (it writes a checkpoint), logs (logger `icg_rec.pipeline.timing`) the estimated time
    of the rest, and the run then resumes from that checkpoint, checkpointing at least every
    `CHECKPOINT_SECONDS`. A folder that already holds a checkpoint resumes from it directly.

    Args:
        fit: (trainer config, resume) -> None; it must write `checkpoint` when it ends.
        config: the trainer config, with `steps_field` and `checkpoint_every` fields.
        checkpoint: the trainer's checkpoint folder.
        device: "cpu" probes; any other device runs directly.
        what: the stage's name, in the logged line.
        steps_field: the config's field that counts steps ("steps", or "rounds" for DPO).
    """
    steps = getattr(config, steps_field)
    if checkpoint.is_dir():
        logger.info("[%s] resuming from %s", what, checkpoint)
        fit(config, True)
        return
    if device != "cpu" or steps <= PROBE_STEPS:
        fit(config, False)
        return
    start = time.perf_counter()
    fit(replace(config, **{steps_field: PROBE_STEPS}), False)
    per_step = (time.perf_counter() - start) / PROBE_STEPS
    every = max(1, min(config.checkpoint_every, int(CHECKPOINT_SECONDS / per_step)))
    logger.info(
        f"[{what}] estimated at most {per_step * (steps - PROBE_STEPS) / 60:.1f} min for the remaining "
        f"{steps - PROBE_STEPS} of {steps} {steps_field} on CPU ({per_step:.2f} s each over the first "
        f"{PROBE_STEPS}, setup included); checkpoint every {every}"
    )
    fit(replace(config, checkpoint_every=every), True)
