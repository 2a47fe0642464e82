"""What a reward is: a score per cover, differentiable in the pixels where `differentiable` says so."""

from dataclasses import dataclass
from typing import Protocol

import torch

# The user id that stands for "no particular user" (the population) in a reward's user_ids. Reserved:
# PersonalizedRewardModel.fit refuses a log that holds it, so it never names a real user.
GENERIC_USER = -1


@dataclass
class RewardInputs:
    """A batch of covers and whom/what they are for."""

    images: torch.Tensor  # (batch, 3, H, W) float in [0, 1]
    item_ids: torch.Tensor | None = None  # (batch,) int64
    user_ids: torch.Tensor | None = None  # (batch,) int64; GENERIC_USER (or None) = the generic user
    titles: list[str] | None = None  # batch titles, for relevance


class Reward(Protocol):
    name: str  # key of this reward in logs and in the combiner
    differentiable: bool  # False: callers must not back-propagate through it

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        """Returns scores of shape (batch,), higher is better."""
        ...
