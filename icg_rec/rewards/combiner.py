"""Multi-reward combiner: named rewards, weights, and running mean/std normalisation per reward.

total = sum_k weight_k * (r_k - running_mean_k) / running_std_k   (or sum_k weight_k * r_k unnormalised)

A TOML file configures it, e.g.
    [multi_reward]
    normalize = true
    weights = { personalized = 1.0, aesthetic = 0.2, relevance = 0.5 }
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from icg_rec.io import load_toml_config
from icg_rec.rewards.base import Reward, RewardInputs


@dataclass
class MultiRewardConfig:
    weights: dict[str, float] = field(default_factory=dict)  # reward name -> weight in the total
    normalize: bool = True  # standardise each reward by its running mean / std before weighting
    momentum: float = 0.01  # share of each new batch in the running statistics (after the first batch)
    eps: float = 1e-6  # floor of the running std


@dataclass
class RewardOutput:
    """What the combiner returns: the total and each reward before and after normalisation."""

    total: torch.Tensor  # (batch,) weighted sum of the normalised rewards
    raw: dict[str, torch.Tensor]  # name -> (batch,) the reward as its scorer returned it
    normalized: dict[str, torch.Tensor]  # name -> (batch,) what entered the total (before weighting)


class RunningNorm:
    """Exponential running mean / variance of a scalar reward; the first batch initialises them."""

    def __init__(self, momentum: float = 0.01, eps: float = 1e-6) -> None:
        self.momentum = momentum
        self.eps = eps
        self.mean = 0.0
        self.var = 1.0
        self.count = 0  # batches seen

    def update(self, values: torch.Tensor) -> None:
        """Folds a batch (batch,) into the statistics, without gradients."""
        v = values.detach().double()
        mean = float(v.mean())
        var = float(v.var()) if v.numel() > 1 else 0.0
        if self.count == 0:
            self.mean, self.var = mean, var
        else:
            m = self.momentum
            self.mean = (1 - m) * self.mean + m * mean
            self.var = (1 - m) * self.var + m * var
        self.count += 1

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / max(self.var**0.5, self.eps)


class MultiReward:
    """Weighted sum of named rewards, itself a Reward named "multi".

    Args:
        rewards: the scorers, keyed by the names used in `config.weights`.
        config: weights and normalisation; every weighted name must be in `rewards`.
    """

    name = "multi"

    def __init__(self, rewards: dict[str, Reward], config: MultiRewardConfig) -> None:
        if unknown := sorted(set(config.weights) - set(rewards)):
            raise ValueError(f"weights name reward(s) {unknown} that are not given; given: {sorted(rewards)}")
        if not config.weights:
            raise ValueError("MultiRewardConfig.weights is empty: name at least one reward")
        self.rewards = {k: rewards[k] for k in config.weights}
        self.config = config
        self.norms = {k: RunningNorm(config.momentum, config.eps) for k in config.weights}
        self.update_stats = True  # set False to freeze the running statistics (e.g. for evaluation)

    @classmethod
    def from_toml(cls, path: str | Path, rewards: dict[str, Reward]) -> "MultiReward":
        """Builds the combiner from the [multi_reward] section of a TOML file."""
        return cls(rewards, load_toml_config(MultiRewardConfig, path, section="multi_reward"))

    @property
    def differentiable(self) -> bool:
        """True only if every reward with a non-zero weight is differentiable."""
        return all(r.differentiable for k, r in self.rewards.items() if self.config.weights[k] != 0)

    def evaluate(self, inputs: RewardInputs) -> RewardOutput:
        """Scores a batch with every reward and combines them.

        Args:
            inputs: the covers and their users / items / titles.

        Returns:
            RewardOutput with the total (batch,) and the per-reward breakdown.
        """
        raw, normalized = {}, {}
        total = torch.zeros(inputs.images.shape[0], device=inputs.images.device)
        for k, reward in self.rewards.items():
            r = reward(inputs)  # (batch,)
            if r.shape != total.shape:
                raise ValueError(f"reward {k!r} returned shape {tuple(r.shape)} for {total.shape[0]} images")
            raw[k] = r
            if self.config.normalize:
                if self.update_stats:
                    self.norms[k].update(r)
                r = self.norms[k](r)
            normalized[k] = r
            total = total + self.config.weights[k] * r
        return RewardOutput(total=total, raw=raw, normalized=normalized)

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        """The total reward (batch,), higher is better."""
        return self.evaluate(inputs).total
