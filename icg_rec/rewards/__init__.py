"""Rewards for cover alignment: personalized p(click | user, cover), aesthetic, title relevance, combiner.

Each reward follows `icg_rec.rewards.base.Reward`: `reward(RewardInputs) -> (batch,)`, higher is better,
differentiable in the pixels where `reward.differentiable` is True (all of the rewards here are).
"""

from icg_rec.rewards.aesthetic import (
    AestheticConfig,
    AestheticReward,
    ClipAestheticReward,
    LaionAestheticHead,
)
from icg_rec.rewards.base import Reward, RewardInputs
from icg_rec.rewards.baselines import MatrixFactorizationBaseline, PopularityBaseline
from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig, RewardOutput
from icg_rec.rewards.personalized import CoverFeatures, PersonalizedConfig, PersonalizedRewardModel
from icg_rec.rewards.relevance import ClipRelevanceReward, RelevanceConfig, RelevanceModel, RelevanceReward

__all__ = [
    "AestheticConfig",
    "AestheticReward",
    "ClipAestheticReward",
    "ClipRelevanceReward",
    "CoverFeatures",
    "LaionAestheticHead",
    "MatrixFactorizationBaseline",
    "MultiReward",
    "MultiRewardConfig",
    "PersonalizedConfig",
    "PersonalizedRewardModel",
    "PopularityBaseline",
    "RelevanceConfig",
    "RelevanceModel",
    "RelevanceReward",
    "Reward",
    "RewardInputs",
    "RewardOutput",
]
