"""Heavy stages on a CPU: time a few steps, print the estimate, and checkpoint every few minutes."""

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

PROBE_STEPS = 3  # steps timed before the estimate is printed
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

    The probe runs `fit` with `PROBE_STEPS` steps (it writes a checkpoint), prints the estimated time
    of the rest, and the run then resumes from that checkpoint, checkpointing at least every
    `CHECKPOINT_SECONDS`. A folder that already holds a checkpoint resumes from it directly.

    Args:
        fit: (trainer config, resume) -> None; it must write `checkpoint` when it ends.
        config: the trainer config, with `steps_field` and `checkpoint_every` fields.
        checkpoint: the trainer's checkpoint folder.
        device: "cpu" probes; any other device runs directly.
        what: the stage's name, in the printed line.
        steps_field: the config's field that counts steps ("steps", or "rounds" for DPO).
    """
    steps = getattr(config, steps_field)
    if checkpoint.is_dir():
        print(f"[{what}] resuming from {checkpoint}", flush=True)
        fit(config, True)
        return
    if device != "cpu" or steps <= PROBE_STEPS:
        fit(config, False)
        return
    start = time.perf_counter()
    fit(replace(config, **{steps_field: PROBE_STEPS}), False)
    per_step = (time.perf_counter() - start) / PROBE_STEPS
    every = max(1, min(config.checkpoint_every, int(CHECKPOINT_SECONDS / per_step)))
    print(
        f"[{what}] estimated at most {per_step * (steps - PROBE_STEPS) / 60:.1f} min for the remaining "
        f"{steps - PROBE_STEPS} of {steps} {steps_field} on CPU ({per_step:.2f} s each over the first "
        f"{PROBE_STEPS}, setup included); checkpoint every {every}",
        flush=True,
    )
    fit(replace(config, checkpoint_every=every), True)
