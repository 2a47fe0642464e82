"""User refinement: the user embedding modulates the meta-token states (FiLM); a zero user changes nothing."""

from dataclasses import dataclass

import torch
from torch import nn

from icg_rec.generation.modules import (
    ModelMixin,  # noqa: F401  (diffusers looks a component's base class up here)
    PipelineModule,
)


@dataclass
class RefinerConfig:
    user_dim: int = 32  # width of the user embedding the caller passes (zero vector = generic user)
    meta_dim: int = 128  # width of the meta-token states it modulates


class UserRefiner(PipelineModule):
    """FiLM by user: states * (1 + W_s u) + W_b u, bias-free so that u = 0 gives the non-personalized states.

    Both projections start at zero, so a freshly built refiner is the identity for every user and the
    reward alignment learns how users should move the cover.
    """

    config_class = RefinerConfig
    file_stem = "refiner"

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        self.config = config
        self.scale = nn.Linear(config.user_dim, config.meta_dim, bias=False)
        self.shift = nn.Linear(config.user_dim, config.meta_dim, bias=False)
        nn.init.zeros_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, meta_states: torch.Tensor, users: torch.Tensor | None) -> torch.Tensor:
        """Modulates meta-token states by user.

        Args:
            meta_states: (batch, N, meta_dim) hidden states at the meta positions.
            users: (batch, user_dim) user embeddings, or None for the generic (zero) user.

        Returns:
            (batch, N, meta_dim) refined states; equal to `meta_states` where a user's row is zero.
        """
        if users is None:
            return meta_states
        if users.ndim != 2 or users.shape != (meta_states.shape[0], self.config.user_dim):
            raise ValueError(
                f"user embeddings must be (batch={meta_states.shape[0]}, user_dim={self.config.user_dim}), "
                f"got {tuple(users.shape)}"
            )
        users = users.to(meta_states.dtype)
        scale = self.scale(users)  # (batch, meta_dim)
        shift = self.shift(users)  # (batch, meta_dim)
        return meta_states * (1 + scale[:, None]) + shift[:, None]  # (batch, N, meta_dim)
