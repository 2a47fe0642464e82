"""How much of SimWorld's oracle AUC a model fitted on a log can reach: predictors built from the oracle
that know less and less of each user (an evaluation's ceiling; nothing here trains on the log)."""

import polars as pl
import torch
from torch.nn import functional as F

from icg_rec.data.sim.oracle import visual_attributes
from icg_rec.data.sim.world import SimWorld
from icg_rec.metrics import auc


def oracle_ceilings(world: SimWorld, train: pl.DataFrame, test: pl.DataFrame) -> dict:
    """Test AUC of oracle-built predictors that know less and less of each user, as shares of the oracle's.

    Every predictor knows the world's item-side truth (quality, genre, cover attributes) and each cohort's
    taste centroid and genre vector (the cohort mean of the users' genre affinities); the cohort logit
    L[c, i] = quality_i + genre_c[genre_i] + taste_scale * <centroid_c, attributes_i>. Then
    - cohort_known: each user's true cohort and true bias (only the individual deviation is missing);
    - posterior_true_bias: a Bayes posterior over the cohorts from the user's TRAIN rows (clicks and
      non-clicks), with the user's true bias, scoring by the posterior-expected probability;
    - posterior: the same with the bias unknown too (posterior over cohort x a 41-point grid of the
      bias prior). Nothing individual is known here, so this bounds what a model fitted on this log can
      reach (approximately: it treats the users' deviations as 0 and knows the world's parameters).

    Args:
        world: the SimWorld the rows come from.
        train: its training rows (user_id, item_id, label).
        test: its test rows (user_id, item_id, label, oracle_p).

    Returns:
        {name: {"auc", "share_of_oracle_auc"}} plus the cohort accuracy of the posteriors' argmax.
    """
    oracle, cfg, cohort = world.oracle, world.config, world.user_cohort
    with torch.no_grad():
        z = oracle.standardize(visual_attributes(world.covers))  # (n_items, A)
        genre = torch.stack(
            [oracle.user_genre_affinity[cohort == c].mean(dim=0) for c in range(cfg.n_cohorts)]
        )
        cohort_logit = (
            oracle.item_quality + genre[:, oracle.item_genre] + oracle.taste_scale * oracle.cohort_taste @ z.T
        )
    tu, ti = (torch.tensor(train[c].to_numpy()) for c in ("user_id", "item_id"))
    ty = torch.tensor(train["label"].to_numpy(), dtype=torch.float32)
    su, si = (torch.tensor(test[c].to_numpy()) for c in ("user_id", "item_id"))
    y, oracle_auc = test["label"].to_numpy(), auc(test["label"].to_numpy(), test["oracle_p"].to_numpy())

    def posterior_p(bias: torch.Tensor, log_prior: torch.Tensor) -> tuple[torch.Tensor, float]:
        """bias (n_users, B) grid with log prior (B,): test probabilities (n_test,), cohort accuracy."""
        x = bias[tu][:, None, :] + cohort_logit[:, ti].T[:, :, None]  # (n_train, C, B)
        loglik = -F.binary_cross_entropy_with_logits(x, ty[:, None, None].expand_as(x), reduction="none")
        total = torch.zeros(oracle.n_users, *x.shape[1:]).index_add_(0, tu, loglik) + log_prior  # (U, C, B)
        post = torch.softmax(total.flatten(1), dim=1).reshape(total.shape)  # (U, C, B)
        xs = bias[su][:, None, :] + cohort_logit[:, si].T[:, :, None]  # (n_test, C, B)
        accuracy = (post.sum(dim=2).argmax(dim=1) == cohort).float().mean().item()
        return (post[su] * torch.sigmoid(xs)).sum(dim=(1, 2)), accuracy

    with torch.no_grad():
        known = torch.sigmoid(oracle.user_bias[su] + cohort_logit[cohort[su], si])  # (n_test,)
        true_bias, acc_true = posterior_p(oracle.user_bias[:, None], torch.zeros(1))
        grid = cfg.base_logit + cfg.user_bias_sd * torch.linspace(-4.0, 4.0, 41)  # (B,)
        unknown, acc = posterior_p(
            grid.expand(oracle.n_users, -1), -0.5 * ((grid - cfg.base_logit) / cfg.user_bias_sd) ** 2
        )
    out = {}
    for name, p in (("cohort_known", known), ("posterior_true_bias", true_bias), ("posterior", unknown)):
        value = auc(y, p.double().numpy())
        out[name] = {"auc": value, "share_of_oracle_auc": value / oracle_auc}
    out["posterior_true_bias"]["cohort_accuracy"], out["posterior"]["cohort_accuracy"] = acc_true, acc
    return out
