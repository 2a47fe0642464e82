"""The network of the personalized reward model: cover towers, user side with tastes, logits."""

import torch
from torch import nn
from torch.nn import functional as F

from icg_rec.rewards.personalized.colour import colour_statistics
from icg_rec.rewards.personalized.config import PersonalizedConfig


class CnnTower(nn.Module):
    """Three strided convs on a 32x32 average-pooled copy + global pool, per-channel colour moments and
    the fixed `colour_statistics` of that copy (standardized over the items).

    The fixed statistics give the tower what strided 3x3 convs do not learn from a few hundred covers'
    clicks: how much of the cover lies in each hue, how bright, contrasted, colourful and busy it is.
    """

    def __init__(self, channels: int, dim: int, colour_bins: int) -> None:
        super().__init__()
        c = channels
        self.colour_bins = colour_bins
        self.convs = nn.Sequential(
            nn.Conv2d(3, c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), nn.GELU(),
        )  # fmt: skip
        n_stats = colour_bins + 5 if colour_bins else 0
        # a training step runs the tower on each distinct cover of its batch once, so the batch statistics
        # are over covers (not rows); afterwards the running statistics (of the same covers) take their place
        self.stats_norm = nn.BatchNorm1d(n_stats, affine=False) if colour_bins else None
        self.out = nn.Linear(4 * c + 6 + n_stats, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels - 0.5  # (batch, 3, S, S)
        if x.shape[-1] > 32:
            x = F.adaptive_avg_pool2d(x, 32)  # (batch, 3, 32, 32): colour and layout survive, cost / 4+
        parts = []
        if self.stats_norm is not None:
            parts.append(self.stats_norm(colour_statistics(x + 0.5, self.colour_bins)))  # (batch, bins + 5)
        pooled = self.convs(x).mean(dim=(2, 3))  # (batch, 4c)
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)  # (batch, 6) colour moments
        return self.out(torch.cat([pooled, stats, *parts], dim=1))  # (batch, dim)


class PersonalizedNet(nn.Module):
    """score = <user_vec, cover_vec> + user bias + cover bias + item bias; see `icg_rec.rewards.personalized`."""

    def __init__(self, config: PersonalizedConfig, n_users: int, n_items: int, feat_dim: int, title_dim: int):
        super().__init__()
        d = config.dim
        if config.cover_tower == "cnn":
            self.tower: nn.Module = CnnTower(config.cnn_channels, d, config.colour_bins)
        else:
            self.tower = nn.Sequential(
                nn.Linear(feat_dim, config.hidden), nn.GELU(), nn.Dropout(config.dropout),
                nn.Linear(config.hidden, d),
            )  # fmt: skip
        self.register_buffer("feat_mean", torch.zeros(feat_dim))  # embedding tower input standardisation
        self.register_buffer("feat_std", torch.ones(feat_dim))
        self.title = nn.Linear(title_dim, d, bias=False) if title_dim else None
        # cover vectors standardized over the items: otherwise the tower can grow them and make the L2
        # penalty on the user side meaningless (<user, cover> is invariant to scaling one up, the other down)
        self.cover_norm = nn.BatchNorm1d(d, affine=False)
        self.register_buffer("title_table", torch.zeros(n_items + 1, title_dim))  # row 0: unknown item
        self.cover_bias = nn.Linear(d, 1)  # generic attractiveness of a cover + global bias
        nn.init.zeros_(self.cover_bias.weight)  # start at the smoothed click rates (_init_biases), not noise
        self.use_item_bias = config.use_item_bias
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        nn.init.zeros_(self.item_bias.weight)
        self.user_emb = nn.Embedding(n_users + 1, d)  # row 0: generic user
        nn.init.normal_(self.user_emb.weight, std=0.01)
        self.user_bias = nn.Embedding(n_users + 1, 1)
        nn.init.zeros_(self.user_bias.weight)
        self.tastes = nn.Parameter(0.1 * torch.randn(config.n_tastes, d))  # (n_tastes, dim)
        self.taste_prior = nn.Parameter(torch.zeros(config.n_tastes))  # log prior weights, up to a constant
        # each user's log-likelihood of the history under each taste, summed over the rows given to fit
        self.register_buffer("user_loglik", torch.zeros(n_users + 1, config.n_tastes))

    def cover_vec(self, images: torch.Tensor, titles: torch.Tensor | None) -> torch.Tensor:
        """Cover vectors from tower inputs (features or pixels), plus the title term where titles are given."""
        x = images
        if x.ndim == 2:
            x = (x - self.feat_mean) / self.feat_std  # (batch, feat_dim)
        c = self.tower(x)  # (batch, dim)
        if self.title is not None and titles is not None:
            c = c + self.title(titles)  # (batch, dim)
        return self.cover_norm(c)  # (batch, dim)

    def generic_logit(self, c: torch.Tensor, item_rows: torch.Tensor) -> torch.Tensor:
        """The user-free part of the score: cover and item biases, (batch,)."""
        s = self.cover_bias(c)[:, 0]  # (batch,)
        if self.use_item_bias:
            s = s + self.item_bias(item_rows)[:, 0]
        return s

    def user_vec(self, user_rows: torch.Tensor, loglik: torch.Tensor) -> torch.Tensor:
        """Id embedding + posterior-mean taste, (batch, dim), from history log-likelihoods (batch, n_tastes)."""
        posterior = torch.softmax(loglik + self.taste_prior, dim=1)  # (batch, n_tastes)
        return self.user_emb(user_rows) + posterior @ self.tastes

    def history_loglik(
        self, c: torch.Tensor, user_rows: torch.Tensor, item_rows: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """log p(y | user bias, cover, taste k) of history rows under each taste, (rows, n_tastes)."""
        s = self.generic_logit(c, item_rows) + self.user_bias(user_rows)[:, 0]  # (rows,)
        s = s[:, None] + c @ self.tastes.T  # (rows, n_tastes)
        return -F.binary_cross_entropy_with_logits(s, y[:, None].expand_as(s), reduction="none")

    def logit(
        self, c: torch.Tensor, user_rows: torch.Tensor, loglik: torch.Tensor | None, item_rows: torch.Tensor
    ) -> torch.Tensor:
        s = self.generic_logit(c, item_rows)  # (batch,)
        if loglik is None:
            return s
        u = self.user_vec(user_rows, loglik)  # (batch, dim)
        return s + (u * c).sum(dim=1) + self.user_bias(user_rows)[:, 0]
