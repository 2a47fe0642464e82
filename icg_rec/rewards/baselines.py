"""Baselines the personalized reward model must beat: item popularity and id-only matrix factorization.

The third baseline, a non-personalized cover model, is `PersonalizedRewardModel` with
`PersonalizedConfig(use_user=False)`: the same cover tower with no user side.
Both classes here score ids never seen in fit with their global terms (documented, counted in
`n_unknown_`), because held-out rows of a temporal split legitimately hold new items.
"""

import numpy as np
import polars as pl
import torch
from torch.nn import functional as F

from icg_rec.rewards.personalized.training import latest_per_user
from icg_rec.validation import check_columns, table_rows


class PopularityBaseline:
    """p(click | item) = (clicks + smoothing * global rate) / (impressions + smoothing).

    Args:
        smoothing: pseudo-impressions at the global click rate added to every item.
    """

    def __init__(self, smoothing: float = 10.0) -> None:
        self.smoothing = smoothing

    def fit(self, interactions: pl.DataFrame) -> "PopularityBaseline":
        """Learns smoothed per-item click rates from user_id, item_id, label rows."""
        check_columns(interactions, ("item_id", "label"), "interactions")
        self.global_rate_ = float(interactions["label"].mean())
        stats = interactions.group_by("item_id").agg(
            pl.col("label").sum().alias("clicks"), pl.len().alias("n")
        )
        rate = (stats["clicks"].to_numpy() + self.smoothing * self.global_rate_) / (
            stats["n"].to_numpy() + self.smoothing
        )
        self.item_rate_ = dict(zip(stats["item_id"].to_list(), rate.tolist(), strict=True))
        return self

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Returns float64 (n_rows,); items never seen in fit get the global rate."""
        check_columns(frame, ("item_id",), "frame")
        items = frame["item_id"].to_list()
        self.n_unknown_ = sum(i not in self.item_rate_ for i in items)
        return np.array([self.item_rate_.get(i, self.global_rate_) for i in items], dtype=np.float64)


class MatrixFactorizationBaseline:
    """Id-only logistic MF: sigmoid(<p_u, q_i> + b_u + b_i + b), trained with BCE (AdamW, mini-batches).

    Like the personalized model, it keeps the epoch with the best log loss on each user's latest
    `valid_fraction` of rows (when the frame has a timestamp column), so both are early-stopped alike.

    Args:
        dim: latent factors per id.
        epochs: passes over the training rows (the most; the best epoch on the validation slice is kept).
        batch_size: rows per step.
        lr: AdamW learning rate.
        weight_decay: L2 on the factors and biases.
        valid_fraction: each user's latest share of rows held out for early stopping (0: keep the last epoch).
    """

    def __init__(
        self,
        dim: int = 32,
        epochs: int = 20,
        batch_size: int = 1024,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        valid_fraction: float = 0.1,
    ) -> None:
        self.dim = dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.valid_fraction = valid_fraction

    def fit(self, interactions: pl.DataFrame, seed: int = 0) -> "MatrixFactorizationBaseline":
        """Learns user/item factors from user_id, item_id, label (and timestamp, for early stopping) rows.

        Returns:
            self, with the tables `p_`, `q_`, `bu_`, `bi_`, `b_` and `valid_losses_` (one per epoch).
        """
        check_columns(interactions, ("user_id", "item_id", "label"), "interactions")
        torch.manual_seed(seed)
        valid = interactions.clear()
        if self.valid_fraction > 0 and "timestamp" in interactions.columns:
            interactions, valid = latest_per_user(interactions, self.valid_fraction)
        self.user_ids_ = np.unique(interactions["user_id"].to_numpy())
        self.item_ids_ = np.unique(interactions["item_id"].to_numpy())
        u = torch.as_tensor(table_rows(self.user_ids_, interactions["user_id"].to_numpy()))
        i = torch.as_tensor(table_rows(self.item_ids_, interactions["item_id"].to_numpy()))
        y = torch.tensor(interactions["label"].to_numpy(), dtype=torch.float32)
        self.p_ = torch.nn.Embedding(len(self.user_ids_) + 1, self.dim, padding_idx=0)  # row 0: unseen
        self.q_ = torch.nn.Embedding(len(self.item_ids_) + 1, self.dim, padding_idx=0)
        self.bu_ = torch.nn.Embedding(len(self.user_ids_) + 1, 1, padding_idx=0)
        self.bi_ = torch.nn.Embedding(len(self.item_ids_) + 1, 1, padding_idx=0)
        for table in (self.p_, self.q_):
            torch.nn.init.normal_(table.weight, std=0.01)
        for table in (self.bu_, self.bi_):
            torch.nn.init.zeros_(table.weight)
        self.b_ = torch.nn.Parameter(torch.logit(y.mean().clamp(1e-4, 1 - 1e-4)).reshape(1))
        params = [
            *self.p_.parameters(),
            *self.q_.parameters(),
            *self.bu_.parameters(),
            *self.bi_.parameters(),
        ]
        opt = torch.optim.AdamW([*params, self.b_], lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        vu = torch.as_tensor(table_rows(self.user_ids_, valid["user_id"].to_numpy()))
        vi = torch.as_tensor(table_rows(self.item_ids_, valid["item_id"].to_numpy()))
        vy = torch.tensor(valid["label"].to_numpy(), dtype=torch.float32)
        tables = [self.p_, self.q_, self.bu_, self.bi_]
        best, best_state, self.valid_losses_ = np.inf, None, []
        for _ in range(self.epochs):
            perm = torch.randperm(len(y), generator=gen)
            for s in range(0, len(y), self.batch_size):
                b = perm[s : s + self.batch_size]
                loss = F.binary_cross_entropy_with_logits(self._logit(u[b], i[b]), y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if len(vy):
                with torch.no_grad():
                    v_loss = F.binary_cross_entropy_with_logits(self._logit(vu, vi), vy).item()
                self.valid_losses_.append(v_loss)
                if v_loss < best:
                    best = v_loss
                    best_state = [t.weight.detach().clone() for t in tables] + [self.b_.detach().clone()]
        if best_state is not None:
            with torch.no_grad():
                for table, weight in zip(tables, best_state[:-1], strict=True):
                    table.weight.copy_(weight)
                self.b_.copy_(best_state[-1])
        return self

    def _logit(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        dot = (self.p_(u) * self.q_(i)).sum(dim=1)  # (batch,)
        return dot + self.bu_(u)[:, 0] + self.bi_(i)[:, 0] + self.b_

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Returns float64 (n_rows,); ids never seen in fit use zero factors and biases."""
        check_columns(frame, ("user_id", "item_id"), "frame")
        u = torch.as_tensor(table_rows(self.user_ids_, frame["user_id"].to_numpy()))
        i = torch.as_tensor(table_rows(self.item_ids_, frame["item_id"].to_numpy()))
        self.n_unknown_ = int((u == 0).sum() + (i == 0).sum())
        with torch.no_grad():
            return torch.sigmoid(self._logit(u, i)).double().numpy()
