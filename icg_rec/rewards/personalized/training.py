"""Training of the personalized reward network: mini-batches whose cost is proportional to the batch.

Each step encodes only the covers of the batch's items, and reads each user's history log-likelihood
from a `HistoryTable` kept up to date incrementally (incremental EM, Neal & Hinton 1998): the table
holds every training row's per-taste log-likelihood, and each step refreshes its batch's rows with the
parameters it ran with, so every row's term is at most one epoch old and no step touches the whole log. The
posterior over tastes is an E-step quantity: gradients do not flow through it into the history.
"""

import numpy as np
import polars as pl
import torch
from torch.nn import functional as F
from tqdm import tqdm

from icg_rec.rewards.personalized.config import PersonalizedConfig
from icg_rec.rewards.personalized.net import PersonalizedNet


class HistoryTable:
    """Out-of-fold sums of per-taste history log-likelihoods, updated row by row.

    Args:
        rows: (n_rows, n_tastes) each training row's log-likelihood under each taste.
        users: (n_rows,) user table row of each training row.
        folds: (n_rows,) history fold of each training row, in 0..k-1.
        n_user_rows: rows of the user tables (users + the generic row 0).
        k: history folds.
    """

    def __init__(
        self, rows: torch.Tensor, users: torch.Tensor, folds: torch.Tensor, n_user_rows: int, k: int
    ) -> None:
        self.k = k
        self.users, self.folds = users, folds
        self.rows = rows.detach().clone()  # (n_rows, n_tastes)
        self.total = rows.new_zeros(n_user_rows, rows.shape[1]).index_add_(0, users, self.rows)
        self.in_fold = rows.new_zeros(n_user_rows * k, rows.shape[1]).index_add_(
            0, users * k + folds, self.rows
        )

    def out_of_fold(self, users: torch.Tensor, folds: torch.Tensor) -> torch.Tensor:
        """Sum over each user's rows outside the given fold, (batch, n_tastes); zeros for row 0 (generic)."""
        return self.total[users] - self.in_fold[users * self.k + folds]

    def update(self, index: torch.Tensor, rows: torch.Tensor) -> None:
        """Replaces the log-likelihoods of training rows `index` (unique) by `rows` (len(index), n_tastes)."""
        delta = rows.detach() - self.rows[index]  # (b, n_tastes)
        users = self.users[index]
        self.total.index_add_(0, users, delta)
        self.in_fold.index_add_(0, users * self.k + self.folds[index], delta)
        self.rows[index] = rows.detach()


def train_net(
    net: PersonalizedNet,
    config: PersonalizedConfig,
    images: torch.Tensor,
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    seed: int,
    progress: bool,
    device: torch.device,
) -> list[dict[str, float]]:
    """Trains `net` in place and leaves it at the epoch with the best validation log loss.

    Args:
        net: a freshly built network (biases are initialized here).
        config: training settings.
        images: (n_items, ...) tower inputs; item table row r reads images[r - 1].
        train: (user rows, item rows, labels) of the training rows, (n,) each.
        valid: the same for the validation slice (may be empty).
        seed: seeds folds, dropout and batching.
        progress: show a tqdm bar over epochs.
        device: where to train; random draws stay on the CPU generator (same seed, same model anywhere).

    Returns:
        One {"train_loss", "valid_loss"} per epoch.
    """
    u, i, y = train
    vu, vi, vy = valid
    rng = np.random.default_rng(seed)
    folds = torch.as_tensor(rng.integers(0, config.history_folds, len(y)))
    n_user_rows = net.user_emb.num_embeddings
    negatives = negatives_by_user(u, y, n_user_rows)
    init_biases(net, u, i, y)
    net.to(device)  # index tensors drawn on the CPU, then moved: the same seed, the same model anywhere
    images = images.to(device)
    u, i, y, folds, vu, vi, vy = (t.to(device) for t in (u, i, y, folds, vu, vi, vy))
    negatives = tuple(t.to(device) for t in negatives)
    history = None
    if config.use_user and config.use_history:
        with torch.no_grad():
            net.train()
            start = net.history_loglik(all_covers(net, images)[i], u, i, y)  # (n, n_tastes)
        history = HistoryTable(start, u, folds, n_user_rows, config.history_folds)

    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, log = np.inf, None, []
    n_steps = max(1, len(y) // config.batch_size)  # the remainder joins the other batches: none of 1 row
    for _epoch in tqdm(range(config.epochs), desc="personalized reward", disable=not progress):
        net.train()
        for b in torch.tensor_split(torch.randperm(len(y), generator=gen).to(device), n_steps):
            loss = step_loss(net, config, images, (u, i, y, folds), b, history, negatives, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            store_history(net, images, u, i, y)
            v_loss = (
                F.binary_cross_entropy_with_logits(row_logits(net, config, images, vu, vi), vy).item()
                if len(vy)
                else loss.item()
            )
        log.append({"train_loss": loss.item(), "valid_loss": v_loss})
        if v_loss < best:
            best, best_state = v_loss, {k: t.clone() for k, t in net.state_dict().items()}
    net.load_state_dict(best_state)
    return log


def step_loss(
    net: PersonalizedNet,
    config: PersonalizedConfig,
    images: torch.Tensor,
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    b: torch.Tensor,
    history: HistoryTable | None,
    negatives: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    gen: torch.Generator,
) -> torch.Tensor:
    """The loss of one training batch, at a cost that grows with the batch, not with the catalogue or log.

    BCE (+ the user L2 penalty, + the pairwise term) of rows `b`, encoding only their distinct covers; the
    users' histories come from `history`, whose rows `b` are then refreshed with this step's parameters.

    Args:
        net: the network (train mode).
        config: training settings.
        images: (n_items, ...) tower inputs; item table row r reads images[r - 1].
        rows: (user rows, item rows, labels, history folds) of every training row, (n,) each.
        b: (batch,) indices of the batch's training rows, unique.
        history: the out-of-fold history table, or None without a history (`use_history=False`).
        negatives: `negatives_by_user` of the training rows (for the pairwise term).
        gen: draws the generic-user dropout and the pairwise negatives.

    Returns:
        The scalar loss, with gradient into `net`.
    """
    u, i, y, folds = rows
    pairs = _pairs(b, u, y, negatives, gen) if config.pairwise_weight and config.use_user else None
    used = b if pairs is None else torch.cat([b, *pairs])
    items, inverse = torch.unique(i[used], return_inverse=True)  # the batch's covers, each once
    c = net.cover_vec(images[items - 1], net.title_table[items])[inverse]  # (len(used), dim)
    cb = c[: len(b)]  # (b, dim)

    def loglik(users: torch.Tensor, rows_: torch.Tensor) -> torch.Tensor | None:
        if not config.use_user:
            return None
        if history is None:
            return torch.zeros(len(users), config.n_tastes, device=users.device)
        return history.out_of_fold(users, folds[rows_])  # (b, n_tastes)

    ub = u[b]
    if config.use_user:
        drop = (torch.rand(len(b), generator=gen) < config.user_dropout).to(ub.device)
        ub = torch.where(drop, torch.zeros_like(ub), ub)
    logits = net.logit(cb, ub, loglik(ub, b), i[b])  # (b,)
    loss = F.binary_cross_entropy_with_logits(logits, y[b]) + config.user_l2 * _user_penalty(
        net, config, u[b]
    )
    if pairs is not None and len(pairs[0]):
        pos, neg = pairs
        cp, cn = c[len(b) : len(b) + len(pos)], c[len(b) + len(pos) :]
        margin = net.logit(cp, u[pos], loglik(u[pos], pos), i[pos]) - net.logit(
            cn, u[neg], loglik(u[neg], neg), i[neg]
        )  # (pairs,)
        loss = loss + config.pairwise_weight * -F.logsigmoid(margin).mean()
    if history is not None:
        with torch.no_grad():
            history.update(b, net.history_loglik(cb.detach(), u[b], i[b], y[b]))
    return loss


def _pairs(b, u, y, negatives, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clicked row of the batch with a random shown-not-clicked row of its user (Bradley-Terry)."""
    starts, counts, neg_rows = negatives
    pos = b[y[b] > 0]
    pos = pos[counts[u[pos]] > 0]
    pick = (torch.rand(len(pos), generator=gen).to(u.device) * counts[u[pos]]).long()
    return pos, neg_rows[starts[u[pos]] + pick]


def _user_penalty(net: PersonalizedNet, config: PersonalizedConfig, u: torch.Tensor) -> torch.Tensor:
    """Mean squared norm of the batch's user rows (id embedding and bias)."""
    if not config.use_user:
        return torch.zeros((), device=u.device)
    return (net.user_emb(u) ** 2).sum(1).mean() + (net.user_bias(u) ** 2).mean()


def all_covers(net: PersonalizedNet, images: torch.Tensor) -> torch.Tensor:
    """Cover vectors of every item by table row, (n_items + 1, dim); row 0 (unknown item) is zero."""
    c = net.cover_vec(images, net.title_table[1:])  # (n_items, dim)
    return torch.cat([c.new_zeros(1, c.shape[1]), c])


def store_history(
    net: PersonalizedNet, images: torch.Tensor, u: torch.Tensor, i: torch.Tensor, y: torch.Tensor
) -> None:
    """Sets `net.user_loglik` to the sum over each user's rows (u, i, y) of the per-taste log-likelihood."""
    loglik = net.history_loglik(all_covers(net, images)[i], u, i, y)  # (rows, n_tastes)
    net.user_loglik.copy_(torch.zeros_like(net.user_loglik).index_add_(0, u, loglik))


def stored_loglik(net: PersonalizedNet, config: PersonalizedConfig, u: torch.Tensor) -> torch.Tensor:
    """Stored history log-likelihoods of user rows (zeros: the prior, without a history), (n, n_tastes)."""
    if config.use_history:
        return net.user_loglik[u]
    return torch.zeros(len(u), config.n_tastes, device=u.device)


def row_logits(
    net: PersonalizedNet, config: PersonalizedConfig, images: torch.Tensor, u: torch.Tensor, i: torch.Tensor
) -> torch.Tensor:
    """Uncalibrated logits of (user row, item row) pairs with the stored histories, (n,)."""
    c = all_covers(net, images)[i]  # (n, dim)
    return net.logit(c, u, stored_loglik(net, config, u) if config.use_user else None, i)


def latest_per_user(frame: pl.DataFrame, fraction: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Splits off each user's latest `fraction` of rows (floor, so users with few rows stay in train)."""
    ranked = frame.with_row_index("_row").with_columns(
        (
            pl.col("timestamp").rank("ordinal").over("user_id")
            > (pl.len().over("user_id") * (1 - fraction)).ceil()
        ).alias("_valid")
    )
    valid = ranked.filter(pl.col("_valid")).sort("_row").drop("_row", "_valid")
    return ranked.filter(~pl.col("_valid")).sort("_row").drop("_row", "_valid"), valid


def init_biases(net: PersonalizedNet, u: torch.Tensor, i: torch.Tensor, y: torch.Tensor) -> None:
    """Starts the global, item and user biases at empirical-Bayes smoothed log-odds of the click rates.

    Adam moves each parameter by about lr per step, so biases started at 0 would need far more steps
    than early stopping allows to reach item/user effects of +-1 logit. A user with 3 clicks in 30
    impressions says little about their propensity, so each table's rates are shrunk toward the global
    rate by a strength fitted to that table (`beta_prior_strength`), not by a fixed constant.
    """
    rate = y.mean().clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        net.cover_bias.bias.fill_(torch.logit(rate))
        for table, rows in ((net.item_bias, i), (net.user_bias, u)):
            n = table.weight.shape[0]
            clicks = torch.bincount(rows, y, n)
            shown = torch.bincount(rows, minlength=n).float()
            strength = beta_prior_strength(clicks, shown)
            smoothed = (clicks + strength * rate) / (shown + strength)  # (n,)
            table.weight[:, 0] = torch.logit(smoothed.clamp(1e-4, 1 - 1e-4)) - torch.logit(rate)
            table.weight[0] = 0.0


def beta_prior_strength(clicks: torch.Tensor, shown: torch.Tensor) -> float:
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


def negatives_by_user(
    u: torch.Tensor, y: torch.Tensor, n_user_rows: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR-style index of each user's shown-not-clicked training rows: (starts, counts, rows)."""
    neg_rows = torch.nonzero(y == 0)[:, 0]
    order = torch.argsort(u[neg_rows], stable=True)
    rows = neg_rows[order]
    counts = torch.bincount(u[rows], minlength=n_user_rows)
    starts = torch.cumsum(counts, 0) - counts
    return starts, counts, rows


def fit_platt(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
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
