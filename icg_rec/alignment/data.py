"""What alignment trains on: the items (title, reference cover, id) and the audience (user ids + embeddings).

The generator reads a user as an embedding (the refiner FiLMs the meta states by it); the rewards read the
same user as an id. `Audience` keeps the two side by side. The natural embedding is the personalized reward
model's own user vector (`personalized_user_vectors`): it is learned from clicks, so it carries taste.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from icg_rec.errors import SchemaError
from icg_rec.generation.prompter import ImageLike
from icg_rec.rewards.personalized import PersonalizedRewardModel


@dataclass
class ItemSet:
    """The items whose covers are aligned."""

    titles: list[str]  # one title per item
    images: (
        Sequence[ImageLike] | torch.Tensor
    )  # reference covers: (n, 3, H, W) in [0, 1], PIL images or paths
    item_ids: torch.Tensor  # (n,) int64 ids the rewards know the items by

    def __post_init__(self) -> None:
        self.titles = list(self.titles)
        self.item_ids = torch.as_tensor(self.item_ids, dtype=torch.int64)
        n = len(self.titles)
        if n == 0:
            raise SchemaError("ItemSet is empty: alignment needs at least one item")
        if len(self.images) != n or self.item_ids.shape != (n,):
            raise SchemaError(
                f"ItemSet needs one reference cover and one id per title: {n} titles, "
                f"{len(self.images)} covers, item_ids of shape {tuple(self.item_ids.shape)}"
            )

    def __len__(self) -> int:
        return len(self.titles)


@dataclass
class Audience:
    """The users covers are made for: ids for the rewards, embeddings for the generator."""

    user_ids: torch.Tensor  # (U,) int64 ids the rewards score for; -1 = the generic user
    vectors: torch.Tensor  # (U, user_dim) float embeddings the refiner reads; a zero row = the generic user

    def __post_init__(self) -> None:
        self.user_ids = torch.as_tensor(self.user_ids, dtype=torch.int64)
        self.vectors = torch.as_tensor(self.vectors, dtype=torch.float32)
        if self.user_ids.ndim != 1 or len(self.user_ids) == 0:
            raise SchemaError(
                f"Audience.user_ids must be a non-empty (U,) tensor, got {tuple(self.user_ids.shape)}"
            )
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.user_ids):
            raise SchemaError(
                f"Audience.vectors must be (U={len(self.user_ids)}, user_dim), got {tuple(self.vectors.shape)}"
            )

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass
class HeldOutPairs:
    """Fixed (item, user) pairs, users outside the training audience, on which alignment is validated."""

    item_index: torch.Tensor  # (P,) int64 rows of the ItemSet
    users: Audience  # (P,) one user per pair: ids for the rewards, vectors for the generator
    noise_seed: int = 20_000  # pair i is generated from noise seeded with noise_seed + i

    def __post_init__(self) -> None:
        self.item_index = torch.as_tensor(self.item_index, dtype=torch.int64)
        if self.item_index.shape != (len(self.users),):
            raise SchemaError(
                f"HeldOutPairs needs one item row per user: item_index {tuple(self.item_index.shape)}, "
                f"{len(self.users)} users"
            )

    def __len__(self) -> int:
        return len(self.users)


def derive_seed(seed: int, *keys: str | int) -> int:
    """A seed for one part of a run (an arm, a seed of a sweep) that depends only on `seed` and `keys`.

    Parts seeded this way do not share a random stream, so adding, removing or reordering parts leaves
    every other part's numbers unchanged.

    Args:
        seed: the run's seed.
        keys: names of the part, e.g. ("arm", "personal").

    Returns:
        An int in [0, 2**63).
    """
    text = "/".join(str(k) for k in (seed, *keys)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def personalized_user_vectors(
    model: PersonalizedRewardModel, user_ids: np.ndarray | torch.Tensor
) -> torch.Tensor:
    """The reward model's user vectors as the generator's embeddings: centred, then unit mean norm.

    Centring matters: a fitted model's user vectors share a large common part (on SimWorld the mean
    vector held 97% of the mean norm, cohort centroids differed by 5%), which the refiner could only
    learn as one more generic shift. After centring a vector says how the user differs from the
    average user, and the generic user (-1) is exactly the zero vector: the non-personalized cover.

    Args:
        model: a fitted PersonalizedRewardModel with a user side (`use_user=True`).
        user_ids: (n,) user ids known to the model, or -1 (the generic user).

    Returns:
        (n, dim) float32, detached; over all of the model's users the mean is 0 and the mean norm 1.
    """
    every = model.user_vectors()  # (U, dim)
    mean = every.mean(dim=0)  # (dim,)
    scale = (every - mean).norm(dim=1).mean().clamp_min(1e-8)
    ids = np.asarray(user_ids)
    vectors = (model.user_vectors(ids) - mean) / scale  # (n, dim)
    vectors[torch.from_numpy(ids == -1)] = 0.0
    return vectors


def evaluation_pairs(
    user_groups: torch.Tensor,
    n_items: int,
    users_per_group: int,
    items_per_user: int,
    seed: int,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed-seed evaluation set of (item, user) pairs, balanced over user groups (e.g. cohorts).

    Args:
        user_groups: (n_users,) int64 group of each user id 0..n_users-1.
        n_items: items are drawn from 0..n_items-1.
        users_per_group: users drawn per group (fewer where a group is smaller).
        items_per_user: distinct items drawn per user.
        seed: the draw.
        exclude: user ids never drawn (e.g. another evaluation set's users), or None.

    Returns:
        item_index (P,) and user_ids (P,) int64, ordered by group, then user.
    """
    if items_per_user > n_items:
        raise ValueError(f"items_per_user ({items_per_user}) must be <= n_items ({n_items})")
    gen = torch.Generator().manual_seed(seed)
    allowed = torch.ones(len(user_groups), dtype=torch.bool)
    if exclude is not None:
        allowed[torch.as_tensor(exclude, dtype=torch.int64)] = False
    items, users = [], []
    for group in torch.unique(user_groups).tolist():
        members = torch.nonzero((user_groups == group) & allowed)[:, 0]  # (m,)
        picked = members[torch.randperm(len(members), generator=gen)[:users_per_group]].sort().values
        for user in picked.tolist():
            items.append(torch.randperm(n_items, generator=gen)[:items_per_user])
            users.append(torch.full((items_per_user,), user, dtype=torch.int64))
    return torch.cat(items), torch.cat(users)


def held_out_split(
    model: PersonalizedRewardModel,
    user_ids: np.ndarray,
    groups: np.ndarray,
    n_items: int,
    seed: int,
    test_users: int = 8,
    valid_users: int = 4,
    items_per_user: int = 4,
) -> tuple[HeldOutPairs, HeldOutPairs, Audience]:
    """A reward model's users split three ways: test pairs, validation pairs and the training audience.

    Validation pairs are what constrained alignment measures its floors on; test pairs are for a judge.
    Neither set's users are in the audience, and the two sets share no user.

    Args:
        model: the fitted PersonalizedRewardModel whose user vectors the generator reads.
        user_ids: (U,) ids the held-out users are drawn from, each known to the model.
        groups: (U,) group of each of them (e.g. cohort); the pairs are balanced over groups.
        n_items: pairs draw item rows 0..n_items-1.
        seed: the test draw; the validation draw derives its own seed from it.
        test_users / valid_users: users per group in each held-out set.
        items_per_user: distinct items per held-out user.

    Returns:
        (test pairs with noise seeds 10_000 + i, validation pairs with 20_000 + i, every other user of the
        model as the audience).
    """
    groups_t, ids = torch.as_tensor(groups), np.asarray(user_ids)
    test_items, test_rows = evaluation_pairs(groups_t, n_items, test_users, items_per_user, seed)
    valid_items, valid_rows = evaluation_pairs(
        groups_t, n_items, valid_users, items_per_user, derive_seed(seed, "valid"), test_rows.unique()
    )

    def users(rows: np.ndarray) -> Audience:
        return Audience(torch.as_tensor(rows), personalized_user_vectors(model, rows))

    test_ids, valid_ids = ids[test_rows.numpy()], ids[valid_rows.numpy()]
    rest = np.setdiff1d(model.user_ids_, np.concatenate([test_ids, valid_ids]))
    test = HeldOutPairs(test_items, users(test_ids), noise_seed=10_000)
    return test, HeldOutPairs(valid_items, users(valid_ids), noise_seed=20_000), users(rest)
