"""Cover-aware logs on SimWorld: which cover each impression showed, drawn from any cover policy.

A `CoverExposure` holds a world's impressions (user, item, time) and, per item, K candidate covers. The
oracle's p(click) of every (impression, candidate) is computed once; a log under a policy (any (n, K)
matrix of probabilities over the candidates) then draws the shown cover and the click per row, and the
policy's true CTR on the same impressions is the probability-weighted mean of the oracle's p(click).
That true value is the ground truth off-policy estimates are judged against.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from icg_rec.data.schema import INTERACTIONS_SCHEMA
from icg_rec.errors import SchemaError

LOG_SCHEMA = {**INTERACTIONS_SCHEMA, "cover_id": pl.Int64(), "propensity": pl.Float64()}
_ORACLE_CHUNK = 65_536  # (impression, candidate) pairs per oracle call


@dataclass
class CoverExposure:
    """Impressions of a SimWorld with K candidate covers per item; build it with `CoverExposure.build`."""

    impressions: pl.DataFrame  # user_id, item_id, timestamp (n rows)
    cover_ids: np.ndarray  # (n, K) int64 cover id of each candidate slot of the row's item; -1 = empty
    click_probs: np.ndarray  # (n, K) float64 oracle p(click) of each candidate (0 in empty slots)

    @classmethod
    def build(
        cls,
        world,
        covers: torch.Tensor,
        cover_ids: np.ndarray,
        impressions: pl.DataFrame | None = None,
    ) -> "CoverExposure":
        """Scores every candidate of every impression with the world's oracle.

        Args:
            world: the SimWorld (its oracle judges the covers; its item ids are 0..n_items-1).
            covers: (n_items, K, 3, S, S) candidate covers by item id, in [0, 1] (anything in empty slots).
            cover_ids: (n_items, K) cover id of each slot, -1 for an empty slot.
            impressions: user_id, item_id, timestamp rows; default the world's own log.

        Returns:
            The exposure.
        """
        n_items = world.config.n_items
        cover_ids = np.asarray(cover_ids, dtype=np.int64)
        if covers.ndim != 5 or covers.shape[0] != n_items or cover_ids.shape != tuple(covers.shape[:2]):
            raise SchemaError(
                f"covers must be (n_items={n_items}, K, 3, S, S) with cover_ids (n_items, K); "
                f"got {tuple(covers.shape)} and {cover_ids.shape}"
            )
        if (cover_ids < 0).all(axis=1).any():
            raise SchemaError("every item needs at least one candidate cover (a cover_id >= 0)")
        frame = world.dataset.interactions if impressions is None else impressions
        if missing := {"user_id", "item_id", "timestamp"} - set(frame.columns):
            raise SchemaError(f"impressions are missing column(s) {sorted(missing)}")
        frame = frame.select("user_id", "item_id", "timestamp")
        k = covers.shape[1]
        with torch.no_grad():
            z = torch.cat(
                [
                    world.oracle.standardized_attributes(chunk)
                    for chunk in covers.reshape(-1, *covers.shape[2:]).split(4096)
                ]
            )  # (n_items * K, A)
            users = torch.tensor(frame["user_id"].to_numpy()).repeat_interleave(
                k
            )  # (n * K,) (a copy: polars is read-only)
            items = torch.tensor(frame["item_id"].to_numpy()).repeat_interleave(k)  # (n * K,)
            slots = items * k + torch.arange(k).repeat(frame.height)  # (n * K,) row of z
            logits = torch.cat(
                [
                    world.oracle.logits_from_attributes(u, z[s], i)
                    for u, s, i in zip(
                        users.split(_ORACLE_CHUNK),
                        slots.split(_ORACLE_CHUNK),
                        items.split(_ORACLE_CHUNK),
                        strict=True,
                    )
                ]
            )
        probs = torch.sigmoid(logits.double()).numpy().reshape(frame.height, k)  # (n, K)
        row_covers = cover_ids[frame["item_id"].to_numpy()]  # (n, K)
        return cls(frame, row_covers, np.where(row_covers >= 0, probs, 0.0))

    def true_ctr(self, probabilities: np.ndarray) -> float:
        """Expected CTR of a policy on these impressions: mean over rows of sum_k pi(k | row) p_oracle(row, k)."""
        self._check(probabilities)
        return float((probabilities * self.click_probs).sum(axis=1).mean())

    def draw(self, probabilities: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draws the shown slot and the click of every impression under a policy.

        Args:
            probabilities: (n, K) policy probabilities of each slot.
            rng: the random stream.

        Returns:
            (slots (n,) int64, labels (n,) float64 0/1).
        """
        self._check(probabilities)
        cdf = np.cumsum(probabilities, axis=1)  # (n, K)
        u = rng.random(len(cdf)) * cdf[:, -1]
        slots = (cdf < u[:, None]).sum(axis=1)  # inverse CDF; never an empty (probability 0) slot
        slots = np.minimum(slots, probabilities.shape[1] - 1)
        p = self.click_probs[np.arange(len(slots)), slots]
        return slots.astype(np.int64), (rng.random(len(p)) < p).astype(np.float64)

    def simulate(self, probabilities: np.ndarray, seed: int = 0) -> pl.DataFrame:
        """A cover-aware log under a policy: the impressions with label, cover_id and propensity.

        Args:
            probabilities: (n, K) policy probabilities of each slot.
            seed: seeds the cover choices and the clicks.

        Returns:
            user_id, item_id, label, timestamp, cover_id, propensity (the policy's probability of the shown cover).
        """
        slots, labels = self.draw(probabilities, np.random.default_rng(seed))
        rows = np.arange(len(slots))
        return pl.DataFrame(
            {
                "user_id": self.impressions["user_id"],
                "item_id": self.impressions["item_id"],
                "label": labels,
                "timestamp": self.impressions["timestamp"],
                "cover_id": self.cover_ids[rows, slots],
                "propensity": probabilities[rows, slots],
            },
            schema=LOG_SCHEMA,
        )

    def _check(self, probabilities: np.ndarray) -> None:
        if probabilities.shape != self.click_probs.shape:
            raise SchemaError(
                f"policy probabilities must be (n, K) = {self.click_probs.shape}, got {probabilities.shape}"
            )
        empty = self.cover_ids < 0
        if (probabilities < 0).any() or (probabilities[empty] > 0).any():
            raise SchemaError("policy probabilities must be >= 0 and 0 on empty candidate slots")
        if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-9):
            raise SchemaError("policy probabilities must sum to 1 over each row's candidates")
