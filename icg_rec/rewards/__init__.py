"""Rewards for cover alignment: personalized p(click | user, cover), aesthetic, title relevance, combiner.

Each reward follows `icg_rec.rewards.base.Reward`: `reward(RewardInputs) -> (batch,)`, higher is better,
differentiable in the pixels where `reward.differentiable` is True (all of the rewards here are).

Importing the package is light: each name imports its submodule (torch, diffusers, ...) on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.rewards.aesthetic import (
        AestheticConfig,
        AestheticReward,
        ClipAestheticReward,
        LaionAestheticHead,
    )
    from icg_rec.rewards.base import Reward, RewardInputs
    from icg_rec.rewards.baselines import MatrixFactorizationBaseline, PopularityBaseline
    from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig, RewardOutput
    from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel
    from icg_rec.rewards.relevance import (
        ClipRelevanceReward,
        RelevanceConfig,
        RelevanceModel,
        RelevanceReward,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "aesthetic": ["AestheticConfig", "AestheticReward", "ClipAestheticReward", "LaionAestheticHead"],
        "base": ["Reward", "RewardInputs"],
        "baselines": ["MatrixFactorizationBaseline", "PopularityBaseline"],
        "combiner": ["MultiReward", "MultiRewardConfig", "RewardOutput"],
        "personalized": ["CoverInputs", "PersonalizedConfig", "PersonalizedRewardModel"],
        "relevance": ["ClipRelevanceReward", "RelevanceConfig", "RelevanceModel", "RelevanceReward"],
    },
)
