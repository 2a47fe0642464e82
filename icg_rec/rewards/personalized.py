"""Personalized reward model: calibrated p(click | user, cover), learned offline from impression logs.

score(user u, cover c) = <user_vec(u), cover_vec(c)> + user_bias(u) + cover_bias(c) + item_bias(item)
  cover_vec = cover tower(image features or pixels) (+ a linear map of the title embedding)
  (the pixel tower reads learned convs and fixed `colour_statistics`: hue histogram, light, contrast)
  user_vec  = id embedding(u) + sum_k posterior(k | u's history) * taste_k

The tastes are `n_tastes` learned vectors in the cover space. A user's posterior over them is Bayes' rule
on every impression in the user's history, clicks and non-clicks alike:
  log posterior(k | u) = log prior(k) + sum over u's rows (item, y) of log p(y | user_bias(u), item, taste_k)
so a user with few impressions gets a taste near the population's (the prior mixture), and each
impression, clicked or not, moves it. This is the structure of a world where users share a handful of
tastes (SimWorld's cohorts); the id embedding keeps what the tastes do not explain.

Row 0 of the user tables is the generic user: a share of training rows (`user_dropout`) is shown as row 0
with an empty history, so user_id -1 scores the population's p(click | cover). Training rows see a
history built out-of-fold (rows are split into `history_folds` folds; a row's history sums the user's
rows from the other folds), so no row sees its own label. Prediction uses the history of every row given
to fit, which lies strictly before the rows being predicted under a temporal split.
"""

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from icg_rec.device import DeviceError, resolve_device
from icg_rec.errors import CheckpointError, SchemaError, UnknownIdError
from icg_rec.io import load_weights, read_json, save_weights, write_json
from icg_rec.rewards.base import RewardInputs

TOWERS = ("embedding", "cnn")


@dataclass
class PersonalizedConfig:
    cover_tower: str = "embedding"  # "embedding": MLP on frozen image-encoder features; "cnn": CNN on pixels
    image_size: int = 64  # cnn tower: side of the square covers it reads, in pixels
    cnn_channels: int = 16  # cnn tower: channels of the first conv layer (doubled twice)
    colour_bins: int = 12  # cnn tower: hue bins of the fixed colour_statistics input (0 = none)
    dim: int = 16  # width of the shared user / cover space
    n_tastes: int = 16  # learned taste vectors a user's history picks among (see the module docstring)
    hidden: int = 64  # hidden width of the embedding tower's MLP
    dropout: float = 0.3  # dropout inside the cover tower
    use_user: bool = True  # False: non-personalized cover model (no user side at all)
    use_history: bool = True  # False: every user gets the prior mixture of tastes (id embedding only)
    use_item_bias: bool = True  # a learned bias per training item id (0 for items never seen in fit)
    user_dropout: float = 0.1  # share of training rows shown as the generic user (trains row 0)
    history_folds: int = 5  # out-of-fold history for training rows
    pairwise_weight: float = 0.0  # weight of the within-user Bradley-Terry term added to pointwise BCE
    epochs: int = 6  # passes over the training rows (the best epoch on the validation slice is kept)
    batch_size: int = 1024  # training rows per step
    lr: float = 3e-3  # AdamW learning rate
    weight_decay: float = 1e-2  # AdamW weight decay
    user_l2: float = 1e-1  # L2 penalty on the id embedding and bias of each user in a batch
    valid_fraction: float = 0.1  # each user's latest share of rows, for early stopping and calibration


@dataclass
class CoverFeatures:
    """What the cover tower reads for a set of items."""

    item_ids: np.ndarray  # (n,) int64
    images: np.ndarray  # (n, d) frozen image-encoder features ("embedding") or (n, 3, S, S) pixels ("cnn")
    titles: np.ndarray | None = None  # (n, t) title embeddings, optional


def colour_statistics(pixels: torch.Tensor, bins: int = 12) -> torch.Tensor:
    """Fixed, differentiable colour and light statistics of covers (a classic image descriptor).

    A chroma-weighted soft hue histogram (`bins` von Mises bumps on the hexcone hue angle; about 0 for a
    grey cover), then mean and standard deviation of luma, mean chroma (max - min of RGB), centre minus
    overall luma (centre = the inner half of each side) and edge density (mean |luma difference| between
    neighbouring pixels).

    Args:
        pixels: (batch, 3, H, W) RGB in [0, 1].
        bins: hue bins, evenly spaced from red.

    Returns:
        (batch, bins + 5).
    """
    r, g, b = pixels.unbind(dim=1)  # each (batch, H, W)
    luma = 0.299 * r + 0.587 * g + 0.114 * b  # (batch, H, W)
    chroma = pixels.amax(dim=1) - pixels.amin(dim=1)  # (batch, H, W)
    opp_a, opp_b = 2.0 * r - g - b, 3.0**0.5 * (g - b)  # (batch, H, W) hexcone hue plane, red on +a
    norm = torch.sqrt(opp_a**2 + opp_b**2 + 1e-8)  # (batch, H, W); eps: finite gradients on grey pixels
    angles = torch.arange(bins, dtype=pixels.dtype, device=pixels.device) * (2.0 * torch.pi / bins)
    cos_c, sin_c = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]  # (bins, 1, 1)
    cosines = (opp_a[:, None] * cos_c + opp_b[:, None] * sin_c) / norm[:, None]  # (batch, bins, H, W)
    bumps = torch.exp(4.0 * (cosines - 1.0))  # von Mises, concentration 4: broad, neighbouring bins overlap
    hist = (bumps * chroma[:, None]).mean(dim=(2, 3))  # (batch, bins)
    h, w = luma.shape[1:]
    centre = luma[:, h // 4 : h - h // 4, w // 4 : w - w // 4].mean(dim=(1, 2))  # (batch,)
    mean = luma.mean(dim=(1, 2))  # (batch,)
    edges = (luma[:, 1:] - luma[:, :-1]).abs().mean(dim=(1, 2)) + (
        luma[:, :, 1:] - luma[:, :, :-1]
    ).abs().mean(dim=(1, 2))  # (batch,)
    scalars = [mean, luma.flatten(1).std(dim=1), chroma.mean(dim=(1, 2)), centre - mean, edges]
    return torch.cat([hist, torch.stack(scalars, dim=1)], dim=1)  # (batch, bins + 5)


class _CnnTower(nn.Module):
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
        # fit runs the tower on every item's cover at once, so in training the batch statistics are the
        # items'; afterwards the running statistics (of the same fixed covers) take their place
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


class _Net(nn.Module):
    def __init__(self, config: PersonalizedConfig, n_users: int, n_items: int, feat_dim: int, title_dim: int):
        super().__init__()
        d = config.dim
        if config.cover_tower == "cnn":
            self.tower: nn.Module = _CnnTower(config.cnn_channels, d, config.colour_bins)
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


class PersonalizedRewardModel:
    """p(click | user, cover) with scikit-learn habits, usable as the "personalized" Reward.

    As a Reward it is differentiable in the pixels: "embedding" towers run pixels -> image_encoder.forward
    -> cover tower; "cnn" towers read the pixels directly (they must be image_size x image_size).

    Args:
        config: model and training settings.
        image_encoder: the frozen ImageEncoder whose features the "embedding" tower was trained on; needed
            only to score pixels (the Reward call), not to fit or predict from precomputed features. It
            must compute on `device`.
        device: "cpu" or "cuda[:N]" (see `icg_rec.device`): where `fit` trains and the model scores;
            `load` takes it too. Covers handed to the Reward call must be on this device.
    """

    name = "personalized"
    differentiable = True

    def __init__(
        self,
        config: PersonalizedConfig | None = None,
        image_encoder: nn.Module | None = None,
        device: str = "cpu",
    ) -> None:
        self.config = config or PersonalizedConfig()
        self.image_encoder = image_encoder
        self.device = device

    # ------------------------------------------------------------------ fit
    def fit(
        self, interactions: pl.DataFrame, covers: CoverFeatures, seed: int = 0, progress: bool = False
    ) -> "PersonalizedRewardModel":
        """Trains on impressions, keeping the epoch with the best log loss on each user's latest rows.

        Args:
            interactions: user_id, item_id, label (1 click / 0 not), timestamp.
            covers: tower inputs for (at least) every item in `interactions`.
            seed: seeds initialisation, folds, dropout and batching.
            progress: show a tqdm bar over epochs.

        Returns:
            self, with `net_`, `user_ids_`, `item_ids_`, `platt_` (a, b), `history_` (per-epoch losses),
            `device_`.
        """
        cfg = self.config
        self.device_ = device = resolve_device(self.device)
        if cfg.cover_tower not in TOWERS:
            raise ValueError(f"cover_tower must be one of {TOWERS}, got {cfg.cover_tower!r}")
        if cfg.colour_bins < 0:
            raise ValueError(f"colour_bins must be >= 0, got {cfg.colour_bins}")
        _check_columns(interactions, ("user_id", "item_id", "label", "timestamp"), "interactions")
        self._check_covers(covers)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        train, valid = _latest_per_user(interactions, cfg.valid_fraction)
        self.user_ids_ = np.unique(train["user_id"].to_numpy())
        self.item_ids_ = np.asarray(covers.item_ids, dtype=np.int64)
        order = np.argsort(self.item_ids_)
        self.item_ids_ = self.item_ids_[order]
        images = torch.as_tensor(np.asarray(covers.images)[order], dtype=torch.float32)
        titles = None if covers.titles is None else torch.as_tensor(covers.titles[order], dtype=torch.float32)
        self.image_encoder_name_ = getattr(self.image_encoder, "name", None)
        net = _Net(cfg, len(self.user_ids_), len(self.item_ids_), _feat_dim(images), _title_dim(titles))
        if images.ndim == 2:
            net.feat_mean.copy_(images.mean(0))
            net.feat_std.copy_(images.std(0) + 1e-6)
        if titles is not None:
            net.title_table[1:] = titles
        self.net_ = net

        u = torch.as_tensor(self._user_rows(train["user_id"].to_numpy()))
        i = torch.as_tensor(self._item_rows(train["item_id"].to_numpy(), strict=True))
        y = torch.tensor(train["label"].to_numpy(), dtype=torch.float32)
        folds = torch.as_tensor(rng.integers(0, cfg.history_folds, len(y)))
        vu = torch.as_tensor(self._user_rows(valid["user_id"].to_numpy()))
        vi = torch.as_tensor(self._item_rows(valid["item_id"].to_numpy(), strict=True))
        vy = torch.tensor(valid["label"].to_numpy(), dtype=torch.float32)
        negs = _negatives_by_user(u, y, len(self.user_ids_) + 1)
        _init_biases(net, u, i, y)
        net.to(device)  # index tensors drawn on the CPU, then moved: the same seed, the same model anywhere
        images = images.to(device)
        u, i, y, folds, vu, vi, vy = (t.to(device) for t in (u, i, y, folds, vu, vi, vy))
        negs = tuple(t.to(device) for t in negs)
        rows = (u, i, y, folds)

        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        best, best_state, self.history_ = np.inf, None, []
        for _epoch in tqdm(range(cfg.epochs), desc="personalized reward", disable=not progress):
            net.train()
            perm = torch.randperm(len(y), generator=gen).to(device)
            for start in range(0, len(y), cfg.batch_size):
                b = perm[start : start + cfg.batch_size]
                c_all = self._all_covers(images)  # (n_items + 1, dim)
                loglik = self._oof_loglik(c_all, rows)  # (n_user_rows * history_folds, n_tastes)
                logits = self._train_logits(c_all, loglik, u[b], i[b], folds[b], gen)
                loss = F.binary_cross_entropy_with_logits(logits, y[b]) + cfg.user_l2 * self._user_penalty(
                    u[b]
                )
                if cfg.pairwise_weight and cfg.use_user:
                    loss = loss + cfg.pairwise_weight * self._pairwise(c_all, loglik, rows, b, negs, gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                self._store_history(images, u, i, y)
                v_logits = self._logits_rows(net, vu, vi, images) if len(vy) else None
                v_loss = F.binary_cross_entropy_with_logits(v_logits, vy).item() if len(vy) else loss.item()
            self.history_.append({"train_loss": loss.item(), "valid_loss": v_loss})
            if v_loss < best:
                best, best_state = v_loss, {k: t.clone() for k, t in net.state_dict().items()}
        net.load_state_dict(best_state)
        self.platt_ = _fit_platt(self._logits_rows(net, vu, vi, images), vy) if len(vy) else (1.0, 0.0)
        with torch.no_grad():  # predictions read every row given to fit: the validation slice is the latest
            self._store_history(images, torch.cat([u, vu]), torch.cat([i, vi]), torch.cat([y, vy]))
        return self

    def _store_history(self, images: torch.Tensor, u: torch.Tensor, i: torch.Tensor, y: torch.Tensor) -> None:
        """Sets `user_loglik` to the sum over each user's rows (u, i, y) of the per-taste log-likelihood."""
        net = self.net_
        loglik = net.history_loglik(self._all_covers(images)[i], u, i, y)  # (rows, n_tastes)
        net.user_loglik.copy_(torch.zeros_like(net.user_loglik).index_add_(0, u, loglik))

    def _all_covers(self, images: torch.Tensor) -> torch.Tensor:
        c = self.net_.cover_vec(images, self.net_.title_table[1:])  # (n_items, dim)
        return torch.cat([c.new_zeros(1, c.shape[1]), c])  # (n_items + 1, dim); row 0 unused

    def _train_logits(self, c_all, loglik, u, i, folds, gen) -> torch.Tensor:
        cfg = self.config
        if not cfg.use_user:
            return self.net_.logit(c_all[i], u, None, i)
        drop = (torch.rand(len(u), generator=gen) < cfg.user_dropout).to(u.device)
        ub = torch.where(drop, torch.zeros_like(u), u)
        return self.net_.logit(c_all[i], ub, loglik[ub * cfg.history_folds + folds], i)

    def _oof_loglik(self, c_all: torch.Tensor, rows: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Per-taste history log-likelihood of each (user row, fold), from the user's rows outside that fold."""
        u, i, y, folds = rows
        k, n_tastes = self.config.history_folds, self.config.n_tastes
        if not self.config.use_history:
            return c_all.new_zeros(self.net_.user_loglik.shape[0] * k, n_tastes)
        loglik = self.net_.history_loglik(c_all[i], u, i, y)  # (rows, n_tastes)
        return _out_of_fold_sums(loglik, u, folds, self.net_.user_loglik.shape[0], k)

    def _user_penalty(self, u: torch.Tensor) -> torch.Tensor:
        """Mean squared norm of the batch's user rows (id embedding and bias)."""
        if not self.config.use_user:
            return torch.zeros(())
        return (self.net_.user_emb(u) ** 2).sum(1).mean() + (self.net_.user_bias(u) ** 2).mean()

    def _pairwise(self, c_all, loglik, rows, b, negs, gen) -> torch.Tensor:
        """Bradley-Terry: each positive in the batch against a random shown-not-clicked row of its user."""
        u, i, y, folds = rows
        starts, counts, neg_rows = negs
        pos = b[y[b] > 0]
        pos = pos[counts[u[pos]] > 0]
        if len(pos) == 0:
            return torch.zeros(())
        pick = (torch.rand(len(pos), generator=gen).to(u.device) * counts[u[pos]]).long()
        neg = neg_rows[starts[u[pos]] + pick]

        def score(r: torch.Tensor) -> torch.Tensor:
            return self.net_.logit(
                c_all[i[r]], u[r], loglik[u[r] * self.config.history_folds + folds[r]], i[r]
            )

        return -F.logsigmoid(score(pos) - score(neg)).mean()

    def _logits_rows(self, net: _Net, u: torch.Tensor, i: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        c = self._all_covers(images)[i]  # (n, dim)
        return net.logit(c, u, self._user_loglik(u) if self.config.use_user else None, i)

    def _user_loglik(self, u: torch.Tensor) -> torch.Tensor:
        """Stored history log-likelihoods of user rows (zeros: the prior, without a history), (n, n_tastes)."""
        if self.config.use_history:
            return self.net_.user_loglik[u]
        return torch.zeros(len(u), self.config.n_tastes, device=u.device)

    # ------------------------------------------------------------------ predict
    def predict(self, frame: pl.DataFrame, covers: CoverFeatures) -> np.ndarray:
        """Calibrated p(click) for each (user_id, item_id) row; user_id -1 is the generic user.

        Args:
            frame: user_id and item_id columns.
            covers: tower inputs holding every item of `frame` (items unseen in fit get item bias 0).

        Returns:
            float64 (n_rows,).
        """
        self._check_fitted()
        _check_columns(frame, ("user_id", "item_id"), "frame")
        self._check_covers(covers)
        cover_ids = np.asarray(covers.item_ids, dtype=np.int64)
        order = np.argsort(cover_ids)
        items = frame["item_id"].to_numpy()
        pos = np.searchsorted(cover_ids[order], items).clip(0, len(cover_ids) - 1)
        if missing := sorted(set(items[cover_ids[order][pos] != items].tolist())):
            raise UnknownIdError(
                f"covers hold no features for {len(missing)} item id(s) of frame, e.g. {missing[:5]}"
            )
        device = self.device_
        images = torch.as_tensor(np.asarray(covers.images)[order][pos], dtype=torch.float32).to(device)
        if self.net_.title is not None and covers.titles is None:
            raise SchemaError("this model reads title embeddings: covers.titles is required")
        titles = (
            None
            if covers.titles is None
            else torch.as_tensor(covers.titles[order][pos], dtype=torch.float32).to(device)
        )
        u = torch.as_tensor(self._user_rows(frame["user_id"].to_numpy())).to(device)
        i = torch.as_tensor(self._item_rows(items, strict=False)).to(device)
        net = self.net_.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(u), 4096):
                c = net.cover_vec(images[s : s + 4096], None if titles is None else titles[s : s + 4096])
                out.append(self._head(c, u[s : s + 4096], i[s : s + 4096]))
        return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)

    def _head(self, c: torch.Tensor, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Calibrated probability from cover vectors and table rows."""
        logit = self.net_.logit(c, u, self._user_loglik(u) if self.config.use_user else None, i)  # (batch,)
        a, b = self.platt_
        return torch.sigmoid(a * logit + b)

    # ------------------------------------------------------------------ reward
    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        """Calibrated p(click) of each cover for its user, differentiable in `inputs.images`.

        Returns:
            (batch,) in (0, 1). Unknown user ids raise UnknownIdError; pass -1 for the generic user.
        """
        self._check_fitted()
        images = inputs.images
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (batch, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        if images.device != self.device_:
            raise DeviceError(
                f"covers are on {images.device} but this personalized reward computes on {self.device_}; "
                f"fit or load it with device={str(images.device)!r}"
            )
        n = images.shape[0]
        if self.config.cover_tower == "cnn":
            s = self.config.image_size
            if images.shape[2:] != (s, s):
                raise ValueError(f"the cnn cover tower reads {s}x{s} covers, got {tuple(images.shape[2:])}")
            x = images
        else:
            if self.image_encoder is None:
                raise ValueError("an 'embedding' cover tower needs image_encoder= to score pixels")
            x = self.image_encoder(images)  # (batch, feat_dim)
        users = inputs.user_ids if inputs.user_ids is not None else torch.full((n,), -1)
        u = torch.as_tensor(self._user_rows(users.cpu().numpy())).to(self.device_)
        if inputs.item_ids is None:
            if self.net_.title is not None:
                raise ValueError("this model reads title embeddings by item id: pass inputs.item_ids")
            i = torch.zeros(n, dtype=torch.long, device=self.device_)
        else:
            i = torch.as_tensor(
                self._item_rows(inputs.item_ids.cpu().numpy(), strict=self.net_.title is not None)
            ).to(self.device_)
        self.net_.eval()
        titles = self.net_.title_table[i] if self.net_.title is not None else None  # (batch, title_dim)
        return self._head(self.net_.cover_vec(x, titles), u, i)

    # ------------------------------------------------------------------ save / load
    def save(self, folder: str | Path) -> Path:
        """Writes config.json and weights.safetensors into `folder`."""
        self._check_fitted()
        folder = Path(folder)
        meta = {
            "config": asdict(self.config),
            "platt": list(self.platt_),
            "image_encoder_name": self.image_encoder_name_,
            "feat_dim": int(self.net_.feat_mean.shape[0]),
            "title_dim": int(self.net_.title_table.shape[1]),
        }
        tensors = {k: v.cpu() for k, v in self.net_.state_dict().items()}
        tensors["user_ids"] = torch.as_tensor(self.user_ids_)
        tensors["item_ids"] = torch.as_tensor(self.item_ids_)
        save_weights(folder / "weights.safetensors", tensors)
        write_json(folder / "config.json", meta)
        return folder

    @classmethod
    def load(
        cls, folder: str | Path, image_encoder: nn.Module | None = None, device: str = "cpu"
    ) -> "PersonalizedRewardModel":
        """Loads a model written by `save` onto `device`; the image encoder must carry the name it was
        fitted with."""
        folder = Path(folder)
        target = resolve_device(device)
        meta = read_json(folder / "config.json")
        tensors = load_weights(folder / "weights.safetensors")
        if isinstance(meta.get("config"), dict):  # written before colour_bins existed: no colour statistics
            meta["config"].setdefault("colour_bins", 0)
        known = {f.name for f in fields(PersonalizedConfig)}
        if not isinstance(meta.get("config"), dict) or set(meta["config"]) - known:
            raise CheckpointError(f"{folder / 'config.json'} does not hold a PersonalizedConfig")
        name = getattr(image_encoder, "name", None)
        if image_encoder is not None and meta["image_encoder_name"] not in (None, name):
            raise CheckpointError(
                f"{folder} was fitted on image encoder {meta['image_encoder_name']!r}, got {name!r}"
            )
        model = cls(PersonalizedConfig(**meta["config"]), image_encoder, device)
        model.user_ids_ = tensors.pop("user_ids", torch.zeros(0, dtype=torch.long)).numpy()
        model.item_ids_ = tensors.pop("item_ids", torch.zeros(0, dtype=torch.long)).numpy()
        model.net_ = _Net(
            model.config, len(model.user_ids_), len(model.item_ids_), meta["feat_dim"], meta["title_dim"]
        )
        try:
            model.net_.load_state_dict(tensors)
        except RuntimeError as err:
            raise CheckpointError(
                f"{folder / 'weights.safetensors'} does not match its config: {err}"
            ) from err
        model.platt_ = tuple(meta["platt"])
        model.image_encoder_name_ = meta["image_encoder_name"]
        model.device_ = target
        model.net_.to(target)
        return model

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise ValueError("PersonalizedRewardModel is not fitted: call fit() or load() first")

    def _check_covers(self, covers: CoverFeatures) -> None:
        images = np.asarray(covers.images)
        n = len(covers.item_ids)
        want = 2 if self.config.cover_tower == "embedding" else 4
        if images.ndim != want or images.shape[0] != n:
            shape = "(n, feat_dim) features" if want == 2 else "(n, 3, S, S) pixels"
            raise SchemaError(
                f"a {self.config.cover_tower!r} cover tower reads {shape} for {n} item ids, got {images.shape}"
            )
        if want == 4 and images.shape[1:] != (3, self.config.image_size, self.config.image_size):
            raise SchemaError(
                f"cnn covers must be (n, 3, {self.config.image_size}, {self.config.image_size}), got {images.shape}"
            )
        if covers.titles is not None and len(covers.titles) != n:
            raise SchemaError(f"covers.titles has {len(covers.titles)} rows for {n} item ids")

    def user_vectors(self, user_ids: np.ndarray | None = None) -> torch.Tensor:
        """The user side the model scores covers with: id embedding + posterior-mean taste.

        Args:
            user_ids: (n,) ids seen at fit, or -1 for the generic user; None = every fitted user in
                `user_ids_` order.

        Returns:
            (n, dim) float32, detached.
        """
        if not self.config.use_user:
            raise ValueError("the reward model has no user side (use_user=False): it holds no user vectors")
        self._check_fitted()
        ids = self.user_ids_ if user_ids is None else np.asarray(user_ids)
        rows = torch.as_tensor(self._user_rows(ids)).to(self.device_)  # raises UnknownIdError on unknown ids
        with torch.no_grad():
            return self.net_.user_vec(rows, self._user_loglik(rows)).float().cpu()  # (n, dim)

    def _user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        """Table rows of user ids: -1 -> 0 (generic); unknown ids raise UnknownIdError."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        if not self.config.use_user:
            return np.zeros(len(user_ids), dtype=np.int64)
        pos = np.searchsorted(self.user_ids_, user_ids).clip(0, max(len(self.user_ids_) - 1, 0))
        known = self.user_ids_[pos] == user_ids
        if bad := sorted(set(user_ids[~known & (user_ids != -1)].tolist())):
            raise UnknownIdError(
                f"{len(bad)} user id(s) were not in the training log, e.g. {bad[:5]}; pass -1 for the generic user"
            )
        return np.where(known, pos + 1, 0)

    def _item_rows(self, item_ids: np.ndarray, strict: bool) -> np.ndarray:
        """Table rows of item ids; unknown -> 0 (no item bias), or UnknownIdError when `strict`."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.searchsorted(self.item_ids_, item_ids).clip(0, len(self.item_ids_) - 1)
        known = self.item_ids_[pos] == item_ids
        if strict and (bad := sorted(set(item_ids[~known].tolist()))):
            raise UnknownIdError(f"{len(bad)} item id(s) have no cover features, e.g. {bad[:5]}")
        return np.where(known, pos + 1, 0)


def _check_columns(frame: pl.DataFrame, needed: tuple[str, ...], what: str) -> None:
    if missing := [c for c in needed if c not in frame.columns]:
        raise SchemaError(
            f"{what} is missing column(s) {missing}; expected {list(needed)}, got {frame.columns}"
        )


def _feat_dim(images: torch.Tensor) -> int:
    return images.shape[1] if images.ndim == 2 else 1


def _title_dim(titles: torch.Tensor | None) -> int:
    return 0 if titles is None else titles.shape[1]


def _latest_per_user(frame: pl.DataFrame, fraction: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Splits off each user's latest `fraction` of rows (floor, so users with few rows stay in train)."""
    ranked = frame.with_row_index("_row").with_columns(
        (
            pl.col("timestamp").rank("ordinal").over("user_id")
            > (pl.len().over("user_id") * (1 - fraction)).ceil()
        ).alias("_valid")
    )
    valid = ranked.filter(pl.col("_valid")).sort("_row").drop("_row", "_valid")
    return ranked.filter(~pl.col("_valid")).sort("_row").drop("_row", "_valid"), valid


def _out_of_fold_sums(
    values: torch.Tensor, u: torch.Tensor, folds: torch.Tensor, n_user_rows: int, k: int
) -> torch.Tensor:
    """Row u*k+f sums `values` (rows, m) over user u's rows outside fold f: (n_user_rows * k, m)."""
    total = values.new_zeros(n_user_rows, values.shape[1]).index_add(0, u, values)  # (n_user_rows, m)
    in_fold = values.new_zeros(n_user_rows * k, values.shape[1]).index_add(0, u * k + folds, values)
    return total.repeat_interleave(k, dim=0) - in_fold


def _init_biases(net: _Net, u: torch.Tensor, i: torch.Tensor, y: torch.Tensor) -> None:
    """Starts the global, item and user biases at empirical-Bayes smoothed log-odds of the click rates.

    Adam moves each parameter by about lr per step, so biases started at 0 would need far more steps
    than early stopping allows to reach item/user effects of +-1 logit. A user with 3 clicks in 30
    impressions says little about their propensity, so each table's rates are shrunk toward the global
    rate by a strength fitted to that table (`_beta_prior_strength`), not by a fixed constant.
    """
    rate = y.mean().clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        net.cover_bias.bias.fill_(torch.logit(rate))
        for table, rows in ((net.item_bias, i), (net.user_bias, u)):
            n = table.weight.shape[0]
            clicks = torch.bincount(rows, y, n)
            shown = torch.bincount(rows, minlength=n).float()
            strength = _beta_prior_strength(clicks, shown)
            smoothed = (clicks + strength * rate) / (shown + strength)  # (n,)
            table.weight[:, 0] = torch.logit(smoothed.clamp(1e-4, 1 - 1e-4)) - torch.logit(rate)
            table.weight[0] = 0.0


def _beta_prior_strength(clicks: torch.Tensor, shown: torch.Tensor) -> float:
    """Pseudo-impressions of a Beta prior on per-id click rates, by the method of moments.

    The spread of the observed rates is their true spread plus binomial noise; the prior strength is
    m (1 - m) / true variance - 1, with m the global rate. Returns 1e6 (no id effects) when the observed
    spread is all noise.
    """
    seen = shown > 0
    clicks, shown = clicks[seen], shown[seen]
    m = clicks.sum() / shown.sum()
    rates = clicks / shown
    observed = ((rates - m) ** 2 * shown).sum() / shown.sum()  # impression-weighted variance of the rates
    noise = m * (1 - m) * seen.sum() / shown.sum()  # its binomial part: mean of m (1 - m) / shown
    true_var = observed - noise
    return float(m * (1 - m) / true_var - 1) if true_var > 0 else 1e6


def _negatives_by_user(u: torch.Tensor, y: torch.Tensor, n_user_rows: int):
    """CSR-style index of each user's shown-not-clicked training rows: (starts, counts, rows)."""
    neg_rows = torch.nonzero(y == 0)[:, 0]
    order = torch.argsort(u[neg_rows], stable=True)
    rows = neg_rows[order]
    counts = torch.bincount(u[rows], minlength=n_user_rows)
    starts = torch.cumsum(counts, 0) - counts
    return starts, counts, rows


def _fit_platt(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Platt scaling: (a, b) minimising the log loss of sigmoid(a * logit + b) on a validation slice."""
    ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    x, y = logits.detach().double().cpu(), labels.double().cpu()
    opt = torch.optim.LBFGS([ab], max_iter=100)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(ab[0] * x + ab[1], y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(ab[0].detach()), float(ab[1].detach())
