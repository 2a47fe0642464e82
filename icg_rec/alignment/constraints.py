"""Constrained alignment: climb one reward while others stay near their warm-up values.

A constraint names a training reward and a floor as a share of the reward's value at the start of `fit`
(the warm-up generator), both measured on held-out pairs with fixed noise, never on training batches:

    floor_k = start_k - (1 - share_k) * |start_k|     (share_k * start_k for a positive start)

Two mechanisms act on those validations only (never on a judge):
- Lagrange multipliers (dual ascent, when `dual_lr` > 0): after each validation
      lambda_k <- clip(lambda_k + dual_lr * (floor_k - value_k) / |start_k|, 0, max_multiplier)
  and the trainer adds lambda_k * (normalized reward_k) to the reward it ascends, so a reward below its
  floor gains weight until it recovers, and gives it back once it is safely above.
- Selection (early stopping on the constraint): the trainer keeps the validated state with the highest
  objective among those meeting every floor; the start meets them by definition.

Every validation is a point of the trade-off curve (objective against each constrained reward), written
by `tradeoff_markdown` so a user can pick another operating point: a run is deterministic, so rerunning
with `steps` set to that point's step and `keep="last"` ends in that state.
"""

import math
from dataclasses import dataclass, field

import torch


@dataclass
class ConstraintState:
    """Start values, multipliers and validations of one fit; the trainer owns it, checkpoints save it.

    Args:
        shares: reward name -> floor as a share of its start value (e.g. {"relevance": 0.9}).
        objective: the reward the kept state maximizes.
        dual_lr: multiplier step per unit of relative shortfall (0 = fixed weights).
        max_multiplier: multipliers are capped here.
    """

    shares: dict[str, float]
    objective: str
    dual_lr: float
    max_multiplier: float
    start: dict[str, float] = field(default_factory=dict)  # reward -> value at the first validation
    multipliers: dict[str, float] = field(default_factory=dict)  # reward -> current lambda
    validations: list[dict[str, float]] = field(default_factory=list)  # one row per validation
    best: int = -1  # index into validations of the kept state (-1 before the first)

    def __post_init__(self) -> None:
        for name, share in self.shares.items():
            if not 0 < share <= 1:
                raise ValueError(
                    f"constraint share for {name!r} must be in (0, 1] (a floor at or below the warm-up "
                    f"value), got {share}"
                )
        if self.dual_lr < 0 or self.max_multiplier < 0:
            raise ValueError(
                f"dual_lr and max_multiplier must be >= 0, got {self.dual_lr} and {self.max_multiplier}"
            )
        self.multipliers = {k: self.multipliers.get(k, 0.0) for k in self.shares}

    def floor(self, name: str) -> float:
        """The floor of a constrained reward (after the first validation)."""
        start = self.start[name]
        return start - (1.0 - self.shares[name]) * abs(start)

    def record(self, step: int, values: dict[str, float]) -> dict[str, float]:
        """Adds a validation (mean raw rewards, monitors) at `step`, updates multipliers and the kept state.

        Returns:
            The row as stored: step, every value, `<k>_share` (value / start for a positive start, else
            NaN), `<k>_floor`, `multiplier_<k>` after the update, `feasible` (1 / 0).
        """
        if not self.start:
            self.start = {k: values[k] for k in self.shares}
        row = {"step": float(step), **values}
        feasible = True
        for k in self.shares:
            floor, value, scale = self.floor(k), values[k], max(abs(self.start[k]), 1e-8)
            feasible &= value >= floor
            row[f"{k}_share"] = value / self.start[k] if self.start[k] > 0 else math.nan
            row[f"{k}_floor"] = floor
            step_size = self.dual_lr * (floor - value) / scale
            self.multipliers[k] = min(max(self.multipliers[k] + step_size, 0.0), self.max_multiplier)
            row[f"multiplier_{k}"] = self.multipliers[k]
        row["feasible"] = float(feasible)
        self.validations.append(row)
        kept = self.validations[self.best] if self.best >= 0 else None
        if feasible and (kept is None or values[self.objective] > kept[self.objective]):
            self.best = len(self.validations) - 1
        return row

    def bonus(self, normalized: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """sum_k lambda_k * normalized reward_k, (batch,) (0.0 without multipliers)."""
        return sum((self.multipliers[k] * normalized[k] for k in self.shares), start=0.0)

    def to_json(self) -> dict:
        """What a checkpoint stores to resume exactly."""
        return {
            "start": self.start,
            "multipliers": self.multipliers,
            "validations": self.validations,
            "best": self.best,
        }

    def load_json(self, state: dict) -> None:
        """Restores `to_json`'s state."""
        self.start = dict(state["start"])
        self.multipliers = dict(state["multipliers"])
        self.validations = [dict(row) for row in state["validations"]]
        self.best = int(state["best"])


def tradeoff_markdown(validations: list[dict[str, float]], objective: str, best: int) -> str:
    """The trade-off curve as a Markdown table: one row per validation, the kept state marked.

    Args:
        validations: `ConstraintState.validations` (rows of the same keys).
        objective: the reward the kept state maximizes.
        best: index of the kept row (-1: none).

    Returns:
        The table, with columns step, objective, each `<k>_share` / reward, multipliers, monitors, feasible.
    """
    if not validations:
        return "(no validations)\n"
    keys = [k for k in validations[0] if k not in ("step", "feasible") and not k.endswith("_floor")]
    keys = [objective] + [k for k in keys if k != objective]
    lines = [
        "| step | " + " | ".join(keys) + " | feasible | kept |",
        "|---" * (len(keys) + 3) + "|",
    ]
    for index, row in enumerate(validations):
        cells = [f"{row[k]:.4g}" for k in keys]
        mark = "**kept**" if index == best else ""
        lines.append(
            f"| {int(row['step'])} | "
            + " | ".join(cells)
            + f" | {'yes' if row['feasible'] else 'no'} | {mark} |"
        )
    return "\n".join(lines) + "\n"
