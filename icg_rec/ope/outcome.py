"""The outcome model of the direct method: the personalized reward model fitted out-of-fold on a cover-aware log.

The reward model learns p(click | user, cover) from (user, shown cover, click) rows. Here each candidate
cover of an item is its own cover key (item row x K + slot), so the model's cover tower reads the shown
cover and its cover bias belongs to that cover; the tower reads fixed colour statistics of the pixels
(`colour_statistics`), which cost microseconds per cover, so the model refits per fold in seconds.

Cross-fitting: rows are split into folds at random; a row's q(x, a) for every candidate comes from the
model fitted on the other folds, so no row's estimate was fitted on its own click (the DM and DR
estimates stay honest). A user whose rows all fell in the held-out fold is scored as the generic user.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from icg_rec.errors import SchemaError
from icg_rec.features.frames import fold_ids
from icg_rec.ope.policies import CoverCandidates
from icg_rec.rewards.personalized import (
    CoverInputs,
    PersonalizedConfig,
    PersonalizedRewardModel,
    colour_statistics,
)


@dataclass
class OutcomeConfig:
    n_folds: int = 2  # cross-fitting folds (>= 2)
    epochs: int = 3  # passes of the reward model over each fold's training rows
    batch_size: int = 4096  # rows per step (the history term costs O(rows) per step: fewer, larger steps)
    use_history: bool = True  # user taste from the history posterior (False: id embedding only, ~2.5x faster)
    dim: int = 16  # width of the reward model's user / cover space
    colour_bins: int = 12  # hue bins of the colour statistics the cover tower reads
    seed: int = 0  # seeds folds and fits


def candidate_features(candidates: CoverCandidates, colour_bins: int = 12) -> np.ndarray:
    """Colour statistics of every candidate cover: (n_items, K, colour_bins + 5) float32 (0 in empty slots)."""
    if candidates.images is None:
        raise SchemaError("the outcome model reads the candidates' pixels: build CoverCandidates with images")
    flat = candidates.images.reshape(-1, *candidates.images.shape[2:])  # (n_items * K, 3, S, S)
    with torch.no_grad():
        stats = torch.cat([colour_statistics(chunk, colour_bins) for chunk in flat.split(4096)])
    out = stats.numpy().reshape(*candidates.kinds.shape, -1)
    return np.where(candidates.kinds[..., None] > 0, out, 0.0).astype(np.float32)


def fit_outcome_oof(
    log: pl.DataFrame,
    slots: np.ndarray,
    candidates: CoverCandidates,
    config: OutcomeConfig | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Cross-fitted p(click) of every candidate cover for every logged row.

    Args:
        log: user_id, item_id, label, timestamp (n rows).
        slots: (n,) slot of each row's shown cover among its item's candidates.
        candidates: the candidates (with images, unless `features` is given).
        config: folds, epochs, width, seed.
        features: `candidate_features(candidates)`, when already computed.

    Returns:
        q_hat (n, K) float64; 0 in empty slots.
    """
    config = config or OutcomeConfig()
    if config.n_folds < 2:
        raise SchemaError(f"cross-fitting needs n_folds >= 2, got {config.n_folds}")
    feats = candidate_features(candidates, config.colour_bins) if features is None else features
    k = candidates.n_slots
    item_rows = candidates.item_rows(log["item_id"].to_numpy())
    cover_keys = item_rows * k + np.asarray(slots, dtype=np.int64)  # (n,)
    valid_keys = np.flatnonzero(candidates.kinds.reshape(-1) > 0)  # every candidate cover's key
    covers = CoverInputs(valid_keys, feats.reshape(-1, feats.shape[-1])[valid_keys])
    frame = log.select("user_id", "label", "timestamp").with_columns(item_id=pl.Series(cover_keys))
    users = log["user_id"].to_numpy()
    all_keys = item_rows[:, None] * k + np.arange(k)  # (n, K)
    valid = candidates.kinds[item_rows] > 0  # (n, K)
    folds = fold_ids(log.height, config.n_folds, config.seed)
    reward_config = PersonalizedConfig(
        cover_tower="embedding",
        dim=config.dim,
        epochs=config.epochs,
        batch_size=config.batch_size,
        use_history=config.use_history,
    )
    q_hat = np.zeros((log.height, k))
    for fold in range(config.n_folds):
        held = np.flatnonzero(folds == fold)
        model = PersonalizedRewardModel(reward_config).fit(
            frame.filter(pl.Series(folds != fold)), covers, seed=config.seed + fold
        )
        known = np.isin(users[held], model.user_ids_)
        rows, cols = np.nonzero(valid[held])  # every candidate of every held-out row
        pairs = pl.DataFrame(
            {"user_id": np.where(known, users[held], -1)[rows], "item_id": all_keys[held][rows, cols]}
        )
        q_hat[held[rows], cols] = model.predict(pairs, covers)
    return q_hat
