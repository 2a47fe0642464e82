"""Cover policies: (user, item, candidate covers) -> a probability distribution over the candidates.

An item's candidates are its covers, each with a `cover_id` (the id a cover-aware log records), a kind
("original", "generic" or "cohort") and, for cohort covers, the cohort they were made for. Candidates are
laid out per item in K slots (K = the most candidates any item has; shorter items are padded), so a
policy answers a (rows, K) matrix of probabilities that sums to 1 over each row's real candidates.

Policies are named by a spec string, which is also what an A/B plan and a saved policy record:
`original`, `generic`, `own_cohort`, `reward_greedy`, `softmax:T` (softmax of the reward's logit / T),
`uniform`, and `epsilon:E:SPEC` ((1 - E) SPEC + E uniform over the item's candidates).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl
import torch

from icg_rec.errors import CheckpointError, IcgRecError, SchemaError, UnknownIdError
from icg_rec.io import read_json, write_json
from icg_rec.validation import lookup

KINDS = ("original", "generic", "cohort")  # kind code k + 1 in the slot matrices; 0 = empty slot
ORIGINAL, GENERIC, COHORT = 1, 2, 3
GENERIC_COVER_ID, FIRST_COHORT_COVER_ID = 1, 2  # `candidates_from_refresh`: 0 original, 1 generic, 2 + c


@dataclass
class CoverCandidates:
    """Every item's candidate covers, in K slots per item; build it with `CoverCandidates.from_table`."""

    item_ids: np.ndarray  # (n_items,) int64, sorted, unique
    cover_ids: np.ndarray  # (n_items, K) int64; -1 = empty slot
    kinds: np.ndarray  # (n_items, K) int8: 0 empty, 1 original, 2 generic, 3 cohort
    cohort_ids: np.ndarray  # (n_items, K) int64; -1 unless the slot holds a cohort cover
    images: torch.Tensor | None  # (n_items, K, 3, S, S) float in [0, 1] (zeros in empty slots), or None

    @classmethod
    def from_table(cls, table: pl.DataFrame, images: torch.Tensor | None = None) -> "CoverCandidates":
        """Lays out a candidates table in slots: each item's covers in cover_id order.

        Args:
            table: one row per candidate: item_id, cover_id, kind (one of KINDS), cohort_id (null or -1
                unless kind is "cohort"). (item_id, cover_id) pairs are unique; each item has at most one
                original and one generic cover and one cover per cohort.
            images: (n_rows, 3, S, S) covers in the table's row order, or None.

        Returns:
            The candidates.
        """
        if missing := {"item_id", "cover_id", "kind", "cohort_id"} - set(table.columns):
            raise SchemaError(
                f"candidates table is missing column(s) {sorted(missing)}; expected item_id, cover_id, kind, cohort_id"
            )
        if table.height == 0:
            raise SchemaError("candidates table is empty: every item needs at least one cover")
        frame = table.select(
            pl.col("item_id").cast(pl.Int64),
            pl.col("cover_id").cast(pl.Int64),
            pl.col("kind").cast(pl.String),
            pl.col("cohort_id").cast(pl.Int64).fill_null(-1),
        ).with_row_index("_row")
        if (bad := frame.filter(~pl.col("kind").is_in(list(KINDS)) | pl.col("kind").is_null())).height:
            raise SchemaError(f"candidates.kind must be one of {KINDS}; got e.g. {bad.head(3).rows()}")
        if (dup := frame.filter(pl.struct("item_id", "cover_id").is_duplicated())).height:
            raise SchemaError(f"candidates repeat (item_id, cover_id) pairs, e.g. {dup.head(3).rows()}")
        if (neg := frame.filter(pl.col("cover_id") < 0)).height:
            raise SchemaError(f"candidates.cover_id must be >= 0; got e.g. {neg.head(3).rows()}")
        cohort = pl.col("kind") == "cohort"
        if (bad := frame.filter(cohort & (pl.col("cohort_id") < 0))).height:
            raise SchemaError(f"cohort covers need a cohort_id >= 0; got e.g. {bad.head(3).rows()}")
        key = pl.when(cohort).then(pl.col("cohort_id")).otherwise(-1)
        if (dup := frame.filter(pl.struct(pl.col("item_id"), pl.col("kind"), key).is_duplicated())).height:
            raise SchemaError(
                f"an item has two original, two generic or two covers of one cohort, e.g. {dup.head(3).rows()}"
            )
        if images is not None and (images.ndim != 4 or images.shape[0] != frame.height):
            raise SchemaError(
                f"images must be (n_rows, 3, S, S) for the {frame.height} table rows, got {tuple(images.shape)}"
            )
        frame = frame.sort("item_id", "cover_id").with_columns(
            slot=pl.int_range(pl.len()).over("item_id"), item_row=pl.col("item_id").rank("dense") - 1
        )
        item_ids = frame["item_id"].unique(maintain_order=True).to_numpy()
        n_slots = int(frame["slot"].max()) + 1
        rows = frame["item_row"].to_numpy().astype(np.int64)
        slots = frame["slot"].to_numpy().astype(np.int64)
        cover_ids = np.full((len(item_ids), n_slots), -1, dtype=np.int64)
        kinds = np.zeros((len(item_ids), n_slots), dtype=np.int8)
        cohort_ids = np.full((len(item_ids), n_slots), -1, dtype=np.int64)
        cover_ids[rows, slots] = frame["cover_id"].to_numpy()
        kinds[rows, slots] = frame["kind"].replace_strict({k: i + 1 for i, k in enumerate(KINDS)}).to_numpy()
        cohort_ids[rows, slots] = np.where(
            frame["kind"].to_numpy() == "cohort", frame["cohort_id"].to_numpy(), -1
        )
        laid = None
        if images is not None:
            laid = torch.zeros(len(item_ids), n_slots, *images.shape[1:], dtype=images.dtype)
            source = torch.tensor(frame["_row"].to_numpy(), dtype=torch.int64)
            laid[torch.tensor(rows, dtype=torch.int64), torch.tensor(slots, dtype=torch.int64)] = images[
                source
            ]
        return cls(item_ids, cover_ids, kinds, cohort_ids, laid)

    @property
    def n_slots(self) -> int:
        """K: slots per item."""
        return self.cover_ids.shape[1]

    def item_rows(self, item_ids: np.ndarray) -> np.ndarray:
        """Row of each item id in the slot matrices; an item without candidates raises UnknownIdError."""
        ids = np.asarray(item_ids, dtype=np.int64)
        pos, known = lookup(self.item_ids, ids)
        if (unknown := ~known).any():
            raise UnknownIdError(
                f"{int(unknown.sum())} row(s) show item(s) without candidate covers, e.g. "
                f"{sorted(set(ids[unknown].tolist()))[:5]}"
            )
        return pos

    def slots_of(self, item_ids: np.ndarray, cover_ids: np.ndarray) -> np.ndarray:
        """Slot (n,) of each (item_id, cover_id) pair; a cover that is not among the item's candidates raises."""
        rows = self.item_rows(item_ids)
        covers = np.asarray(cover_ids, dtype=np.int64)
        match = self.cover_ids[rows] == covers[:, None]  # (n, K)
        if (missing := ~match.any(axis=1)).any():
            pairs = sorted(
                set(zip(np.asarray(item_ids)[missing].tolist(), covers[missing].tolist(), strict=True))
            )
            raise UnknownIdError(
                f"{int(missing.sum())} logged (item_id, cover_id) pair(s) are not among the candidates, e.g. {pairs[:5]}"
            )
        return match.argmax(axis=1)

    def table(self) -> pl.DataFrame:
        """The candidates as a table: item_id, cover_id, kind, cohort_id (null unless a cohort cover)."""
        rows, slots = np.nonzero(self.kinds)
        kinds = self.kinds[rows, slots]
        return pl.DataFrame(
            {
                "item_id": self.item_ids[rows],
                "cover_id": self.cover_ids[rows, slots],
                "kind": [KINDS[k - 1] for k in kinds.tolist()],
                "cohort_id": self.cohort_ids[rows, slots],
            },
            schema={"item_id": pl.Int64, "cover_id": pl.Int64, "kind": pl.String, "cohort_id": pl.Int64},
        ).with_columns(cohort_id=pl.when(pl.col("kind") == "cohort").then(pl.col("cohort_id")))


@dataclass
class PolicyContext:
    """What a policy sees for n impressions: the rows' candidates, users' cohorts and the reward's scores."""

    user_ids: np.ndarray  # (n,) int64
    kinds: np.ndarray  # (n, K) int8 slot kinds of each row's item (0 = empty slot)
    cohort_ids: np.ndarray  # (n, K) int64 cohort of each cohort-cover slot, else -1
    user_cohort: np.ndarray | None = None  # (n,) int64 cohort of each row's user (own_cohort needs it)
    scores: np.ndarray | None = None  # (n, K) reward p(click) of each candidate for the row's user

    @property
    def valid(self) -> np.ndarray:
        """(n, K) bool: slots that hold a candidate."""
        return self.kinds > 0


def policy_context(
    candidates: CoverCandidates,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    user_cohort: np.ndarray | None = None,
    scores: np.ndarray | None = None,
) -> PolicyContext:
    """The context of impressions (user_ids[i], item_ids[i]).

    Args:
        candidates: every item's candidate covers.
        user_ids: (n,) user of each impression.
        item_ids: (n,) item of each impression.
        user_cohort: (n,) cohort of each impression's user, or None.
        scores: (n, K) reward p(click) of each candidate slot, or None.

    Returns:
        The context.
    """
    rows = candidates.item_rows(item_ids)
    n, k = len(rows), candidates.n_slots
    if user_cohort is not None and np.shape(user_cohort) != (n,):
        raise SchemaError(f"user_cohort must be (n,) = ({n},), got {np.shape(user_cohort)}")
    if scores is not None and np.shape(scores) != (n, k):
        raise SchemaError(f"scores must be (n, K) = ({n}, {k}), got {np.shape(scores)}")
    return PolicyContext(
        np.asarray(user_ids, dtype=np.int64),
        candidates.kinds[rows],
        candidates.cohort_ids[rows],
        None if user_cohort is None else np.asarray(user_cohort, dtype=np.int64),
        None if scores is None else np.asarray(scores, dtype=np.float64),
    )


class CoverPolicy(Protocol):
    spec: str  # the policy's name, parseable by `parse_policy`

    def probabilities(self, context: PolicyContext) -> np.ndarray:
        """(n, K) float64: probability of showing each slot; 0 on empty slots, rows sum to 1."""
        ...


@dataclass(frozen=True)
class KindPolicy:
    """Always the item's cover of one kind: "original" or "generic"."""

    kind: str  # "original" or "generic"

    @property
    def spec(self) -> str:
        return self.kind

    def probabilities(self, context: PolicyContext) -> np.ndarray:
        code = KINDS.index(self.kind) + 1
        chosen = context.kinds == code  # (n, K)
        if (missing := ~chosen.any(axis=1)).any():
            raise IcgRecError(f"policy {self.kind!r}: {int(missing.sum())} row(s) have no {self.kind} cover")
        return chosen.astype(np.float64)


@dataclass(frozen=True)
class OwnCohortPolicy:
    """The cover made for the user's cohort; the item's generic cover where it has none (counted by `fallbacks`)."""

    @property
    def spec(self) -> str:
        return "own_cohort"

    def probabilities(self, context: PolicyContext) -> np.ndarray:
        if context.user_cohort is None:
            raise IcgRecError(
                "policy 'own_cohort' needs each user's cohort: pass user_cohort to policy_context"
            )
        own = (context.kinds == COHORT) & (context.cohort_ids == context.user_cohort[:, None])  # (n, K)
        missing = ~own.any(axis=1)
        chosen = np.where(missing[:, None], context.kinds == GENERIC, own)
        if (none := ~chosen.any(axis=1)).any():
            raise IcgRecError(
                f"policy 'own_cohort': {int(none.sum())} row(s) have neither a cover for the user's cohort "
                "nor a generic cover"
            )
        return chosen.astype(np.float64)

    @staticmethod
    def fallbacks(context: PolicyContext) -> int:
        """Rows whose item has no cover for the user's cohort (they get the generic cover)."""
        own = (context.kinds == COHORT) & (context.cohort_ids == context.user_cohort[:, None])
        return int((~own.any(axis=1)).sum())


@dataclass(frozen=True)
class RewardGreedyPolicy:
    """The candidate with the highest reward p(click) for the user (the first slot on ties)."""

    @property
    def spec(self) -> str:
        return "reward_greedy"

    def probabilities(self, context: PolicyContext) -> np.ndarray:
        scores = _scores(context, self.spec)
        best = np.where(context.valid, scores, -np.inf).argmax(axis=1)  # (n,)
        out = np.zeros(scores.shape)
        out[np.arange(len(best)), best] = 1.0
        return out


@dataclass(frozen=True)
class RewardSoftmaxPolicy:
    """Softmax over the candidates of logit(reward p(click)) / temperature."""

    temperature: float  # > 0; small = near greedy, large = near uniform

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise IcgRecError(f"softmax temperature must be > 0, got {self.temperature}")

    @property
    def spec(self) -> str:
        return f"softmax:{self.temperature:g}"

    def probabilities(self, context: PolicyContext) -> np.ndarray:
        p = np.clip(_scores(context, self.spec), 1e-9, 1 - 1e-9)
        z = np.where(context.valid, np.log(p / (1 - p)) / self.temperature, -np.inf)  # (n, K)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class UniformPolicy:
    """Every candidate of the item with the same probability: the exploration policy."""

    @property
    def spec(self) -> str:
        return "uniform"

    def probabilities(self, context: PolicyContext) -> np.ndarray:
        valid = context.valid.astype(np.float64)
        return valid / valid.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class EpsilonPolicy:
    """(1 - epsilon) base + epsilon uniform over the item's candidates."""

    epsilon: float  # in [0, 1]
    base: CoverPolicy  # the policy mixed with uniform exploration

    def __post_init__(self) -> None:
        if not 0 <= self.epsilon <= 1:
            raise IcgRecError(f"epsilon must be in [0, 1], got {self.epsilon}")

    @property
    def spec(self) -> str:
        return f"epsilon:{self.epsilon:g}:{self.base.spec}"

    def probabilities(self, context: PolicyContext) -> np.ndarray:
        uniform = UniformPolicy().probabilities(context)
        return (1 - self.epsilon) * self.base.probabilities(context) + self.epsilon * uniform


def _scores(context: PolicyContext, spec: str) -> np.ndarray:
    if context.scores is None:
        raise IcgRecError(
            f"policy {spec!r} needs reward scores of every candidate: pass scores to policy_context"
        )
    return context.scores


def parse_policy(spec: str) -> CoverPolicy:
    """The policy named by a spec string (see the module docstring).

    Args:
        spec: e.g. "own_cohort", "softmax:0.5", "epsilon:0.1:reward_greedy".

    Returns:
        The policy; an unknown or malformed spec raises IcgRecError listing the known ones.
    """
    simple = {
        "original": KindPolicy("original"),
        "generic": KindPolicy("generic"),
        "own_cohort": OwnCohortPolicy(),
        "reward_greedy": RewardGreedyPolicy(),
        "uniform": UniformPolicy(),
    }
    if spec in simple:
        return simple[spec]
    head, _, rest = spec.partition(":")
    try:
        if head == "softmax" and rest:
            return RewardSoftmaxPolicy(float(rest))
        if head == "epsilon" and ":" in rest:
            epsilon, _, base = rest.partition(":")
            return EpsilonPolicy(float(epsilon), parse_policy(base))
    except ValueError as err:
        if isinstance(err, IcgRecError):
            raise
        raise IcgRecError(f"malformed policy spec {spec!r}: {err}") from err
    raise IcgRecError(
        f"unknown policy {spec!r}; known: {sorted(simple)}, 'softmax:T' (T > 0), 'epsilon:E:POLICY'"
    )


def save_policy(policy: CoverPolicy, path: str | Path) -> Path:
    """Writes `{"policy": spec}` as JSON (atomically)."""
    return write_json(path, {"policy": policy.spec})


def load_policy(path: str | Path) -> CoverPolicy:
    """Reads a policy written by `save_policy`; a file without a policy spec raises CheckpointError."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("policy"), str):
        raise CheckpointError(f"{path} does not hold a cover policy: expected {{'policy': SPEC}}")
    return parse_policy(data["policy"])
