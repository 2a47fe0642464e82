"""icg_rec.alignment: reward alignment of the ICG generator (DRaFT-K backprop and Diffusion-DPO)."""

from icg_rec.alignment.data import Audience, ItemSet, evaluation_pairs, personalized_user_vectors
from icg_rec.alignment.dpo import DPOAligner, DPOConfig, diffusion_dpo_loss
from icg_rec.alignment.draft import AlignConfig, RewardAligner

__all__ = [
    "AlignConfig",
    "Audience",
    "DPOAligner",
    "DPOConfig",
    "ItemSet",
    "RewardAligner",
    "diffusion_dpo_loss",
    "evaluation_pairs",
    "personalized_user_vectors",
]
