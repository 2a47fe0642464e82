"""icg_rec.alignment: reward alignment of the ICG generator (DRaFT-K backprop and Diffusion-DPO).

Importing the package is light: each name imports its submodule (torch, diffusers, ...) on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.alignment.constraints import ConstraintState, tradeoff_markdown
    from icg_rec.alignment.data import (
        Audience,
        HeldOutPairs,
        ItemSet,
        derive_seed,
        evaluation_pairs,
        held_out_split,
        personalized_user_vectors,
    )
    from icg_rec.alignment.dpo import DPOAligner, DPOConfig, diffusion_dpo_loss
    from icg_rec.alignment.draft import AlignConfig, RewardAligner

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "constraints": ["ConstraintState", "tradeoff_markdown"],
        "data": [
            "Audience",
            "HeldOutPairs",
            "ItemSet",
            "derive_seed",
            "evaluation_pairs",
            "held_out_split",
            "personalized_user_vectors",
        ],
        "dpo": ["DPOAligner", "DPOConfig", "diffusion_dpo_loss"],
        "draft": ["AlignConfig", "RewardAligner"],
    },
)
