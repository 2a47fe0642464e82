"""CoverFeatures: the cover embedding of each (item, cohort) as a TorchRec module inside the user's model.

Input: a KeyedJaggedTensor holding one or more item-id keys (one id per row, or a jagged list per row such
as a user's last clicked items) and a cohort key with exactly one cohort id per row. Output: a
KeyedTensor with `{item_key}_cover` (batch, dim) per item key (a list of items is mean-pooled) and,
with reward tables, `{item_key}_cover_reward` (batch, 1): the personalized reward model's p(click) of
that cover for the row's user.

The vectors live in a TorchRec `EmbeddingBagCollection` table, one row per stored (item, cohort) cover,
so DistributedModelParallel shards it like any other table (table-wise, column-wise; row-wise on CUDA)
and `load` rewrites rows in place after a refresh, sharded or not. Frozen by default: the output is
detached, so no optimizer (fused or not) moves the covers.

The (item, cohort) -> row mapping is exact, with no hashing: an item slot and a cohort column index a
dense int32 grid of table rows, (item slots, n_cohorts + 1), column 0 holding the item's default cover
(DEFAULT_COHORT). Item ids that fill at least half of their range (ids 0..n-1, say) take slot
id - min(id), one subtraction per lookup; sparse ids (hashes) take their position in a sorted vocabulary
(torch.searchsorted, ~20 cache misses per id over a million ids). Cohorts are looked up in their sorted
vocabulary. 1,000,000 items x 16 cohorts cost 68 MB of grid beside the 4.4 GB (fp32) or 2.2 GB (fp16)
table of 64-d vectors. A key without its own cover is served
the item's default cover (counted as a fallback); an item without any cover is left out of its bag
(counted as missing; a row whose bag ends up empty gets zeros).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor

from icg_rec.cohorts.cache import CoverCache
from icg_rec.doctor import missing_torchrec_message
from icg_rec.errors import CheckpointError, SchemaError, UnknownIdError
from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore

try:
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_configs import DataType
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor
except (ImportError, OSError) as error:  # a missing or mixed FBGEMM build
    raise ImportError(missing_torchrec_message(error)) from error

if TYPE_CHECKING:  # the rewards package is heavy to import and only needed to build RewardTables
    from icg_rec.rewards.personalized import PersonalizedRewardModel

DTYPES = {"fp32": DataType.FP32, "fp16": DataType.FP16}
COUNTS = ("exact", "fallback", "missing")  # order of the lookup counters
_USER_FEATURE = "__cover_user"  # internal KJT key of the reward user table
_ENCODE_BATCH = 256  # covers per image-encoder call in from_refresh


@dataclass
class CoverFeaturesConfig:
    item_keys: list[str] = field(
        default_factory=lambda: ["item_id"]
    )  # KJT keys of item ids (lists are mean-pooled)
    cohort_key: str = (
        "cohort_id"  # KJT key with one cohort id per row; DEFAULT_COHORT asks for the default cover
    )
    user_key: str = "user_id"  # KJT key with one user id per row; read only when reward tables are loaded
    trainable: bool = False  # False: the output is detached, so no optimizer moves the cover rows
    dtype: str = "fp32"  # table precision, "fp32" or "fp16" (half the memory); the output is float32
    table: str = (
        "covers"  # table name in sharding plans and state dicts (the reward user table adds "_users")
    )


@dataclass
class RewardTables:
    """The personalized reward model factored into rows: for a cover c shown to user u,
    p(click) = sigmoid(platt_a * (cover_logit[c] + <user_vectors[u], cover_vectors[c]> + user_bias[u]) + platt_b).

    Users not in `user_ids` get the generic user (`generic_vector`, `generic_bias`).
    """

    cover_vectors: np.ndarray  # (n_covers, d) reward-space vector of each cover, rows in the key order given
    cover_logits: np.ndarray  # (n_covers,) user-free part of the logit (cover and item biases)
    user_ids: np.ndarray  # (n_users,) int64, unique
    user_vectors: np.ndarray  # (n_users, d)
    user_bias: np.ndarray  # (n_users,)
    generic_vector: np.ndarray  # (d,) user side of the generic user
    generic_bias: float  # its bias
    platt: tuple[float, float]  # (a, b) calibration of the logit

    @property
    def dim(self) -> int:
        """Width d of the reward space."""
        return self.cover_vectors.shape[1]


class CoverFeatures(nn.Module):
    """Cover vectors per (item, cohort) in a TorchRec table; KJT in, KeyedTensor out.

    Build it with `from_vectors`, `from_store` or `from_refresh`. For a table too large to hold twice,
    construct it on the meta device, let DistributedModelParallel allocate the shards, then `load`:

        covers = CoverFeatures(item_ids, cohort_ids, dim=64, device=torch.device("meta"))
        model = DistributedModelParallel(WithCovers(dlrm, covers), ...)
        model.module.covers.load(item_ids, cohort_ids, vectors)

    Args:
        item_ids: (n,) int item id of each stored cover; rows of the table in this order.
        cohort_ids: (n,) int cohort id of each cover; DEFAULT_COHORT for an item's default cover.
        dim: width of the cover vectors.
        config: keys, precision, trainability (defaults: CoverFeaturesConfig()).
        user_ids: (n_users,) user ids of a reward user table; None = no reward score.
        reward_dim: width d of the reward space (with user_ids).
        device: where the tables live; "meta" leaves them unallocated (for DMP). The id maps stay on CPU
            unless the module is moved.
    """

    def __init__(
        self,
        item_ids: np.ndarray,
        cohort_ids: np.ndarray,
        dim: int,
        config: CoverFeaturesConfig | None = None,
        user_ids: np.ndarray | None = None,
        reward_dim: int = 0,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.config = config = config or CoverFeaturesConfig()
        _check_config(config)
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if (user_ids is None) != (reward_dim == 0):
            raise ValueError(
                f"user_ids and reward_dim > 0 go together, got user_ids={user_ids is not None}, {reward_dim=}"
            )
        item_slots, cohort_vocab, grid = _key_grid(item_ids, cohort_ids)
        self.dim, self.reward_dim = dim, reward_dim
        # item slot = id - item_base when item_vocab is empty (dense ids), else the position in item_vocab
        self.register_buffer("item_vocab", torch.from_numpy(item_slots.vocab))
        self.register_buffer("item_base", torch.tensor(item_slots.base))
        self.register_buffer("cohort_vocab", torch.from_numpy(cohort_vocab))  # sorted, without the default
        # (item slots, n_cohorts + 1): table row + 1 of each key, 0 = no cover
        self.register_buffer("rows", torch.from_numpy(grid))
        self.register_buffer("lookup_counts", torch.zeros(len(COUNTS), dtype=torch.int64), persistent=False)
        tables = [
            EmbeddingBagConfig(
                name=config.table,
                # cover | reward vector | reward logit | padding
                embedding_dim=_padded(dim + (reward_dim + 1 if reward_dim else 0)),
                num_embeddings=len(np.asarray(item_ids)),
                feature_names=list(config.item_keys),
                pooling=PoolingType.MEAN,
                data_type=DTYPES[config.dtype],
            )
        ]
        if user_ids is not None:
            users = np.asarray(user_ids, dtype=np.int64)
            user_slots = _slot_index(users)
            user_rows = np.zeros(user_slots.size, dtype=np.int64)  # slot -> user table row; 0: generic user
            user_rows[user_slots.slots] = np.arange(1, len(users) + 1)
            if np.count_nonzero(user_rows) != len(users):
                raise SchemaError("reward user_ids hold duplicates")
            self.n_users = len(users)
            self.register_buffer("user_vocab", torch.from_numpy(user_slots.vocab))
            self.register_buffer("user_base", torch.tensor(user_slots.base))
            self.register_buffer("user_rows", torch.from_numpy(user_rows))
            self.register_buffer("platt", torch.zeros(2))  # (a, b)
            tables.append(
                EmbeddingBagConfig(
                    name=f"{config.table}_users",
                    embedding_dim=_padded(reward_dim + 1),  # user vector | user bias | pad
                    num_embeddings=len(users) + 1,
                    feature_names=[_USER_FEATURE],
                    pooling=PoolingType.SUM,
                    data_type=DTYPES[config.dtype],
                )
            )
        self.tables = EmbeddingBagCollection(tables=tables, device=torch.device("meta"))
        if device is None or device.type != "meta":
            self.tables.to_empty(device=device or torch.device("cpu"))
            with torch.no_grad():
                for weight in self.tables.parameters():
                    weight.zero_()
        for weight in self.tables.parameters():
            weight.requires_grad_(config.trainable)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_vectors(
        cls,
        item_ids: np.ndarray,
        cohort_ids: np.ndarray,
        vectors: np.ndarray | torch.Tensor,
        config: CoverFeaturesConfig | None = None,
        reward: RewardTables | None = None,
    ) -> "CoverFeatures":
        """A CPU module holding `vectors` (n, dim) under their (item, cohort) keys (and the reward tables)."""
        vectors = torch.as_tensor(vectors)
        if vectors.ndim != 2:
            raise SchemaError(f"vectors must be (n, dim), got shape {tuple(vectors.shape)}")
        users = None if reward is None else reward.user_ids
        module = cls(item_ids, cohort_ids, vectors.shape[1], config, users, reward.dim if reward else 0)
        module.load(item_ids, cohort_ids, vectors)
        if reward is not None:
            module.load_reward(item_ids, cohort_ids, reward)
        return module

    @classmethod
    def from_store(
        cls,
        store: CoverEmbeddingStore,
        config: CoverFeaturesConfig | None = None,
        reward: RewardTables | None = None,
    ) -> "CoverFeatures":
        """The vectors of a `CoverEmbeddingStore` (its stored, possibly PCA-projected, width)."""
        item_ids = store.keys_["item_id"].to_numpy()
        cohort_ids = store.keys_["cohort_id"].to_numpy()
        return cls.from_vectors(item_ids, cohort_ids, torch.from_numpy(store.vectors_), config, reward)

    @classmethod
    def from_refresh(
        cls, folder: str | Path, image_encoder: nn.Module, config: CoverFeaturesConfig | None = None
    ) -> "CoverFeatures":
        """Embeds every cover of a refresh output folder (manifest.parquet + covers/) with `image_encoder`.

        The generic covers (cohort -1 = DEFAULT_COHORT) become the items' default covers.

        Args:
            folder: what `refresh_covers` wrote.
            image_encoder: maps pixels (B, 3, H, W) in [0, 1] to (B, dim) features, as icg_rec's encoders do.
            config: keys, precision, trainability.

        Returns:
            The module, on CPU.
        """
        keys, vectors = read_refresh_vectors(folder, image_encoder)
        return cls.from_vectors(keys["item_id"].to_numpy(), keys["cohort_id"].to_numpy(), vectors, config)

    # ------------------------------------------------------------------ in-place updates
    def load(self, item_ids: np.ndarray, cohort_ids: np.ndarray, vectors: np.ndarray | torch.Tensor) -> int:
        """Writes cover vectors into their rows in place, on a plain or a DMP-sharded table.

        After a refresh, pass the changed covers only; every process of a DMP group calls it with the
        same arguments and writes the rows of its own shards.

        Args:
            item_ids: (k,) item ids of covers this module holds.
            cohort_ids: (k,) their cohort ids.
            vectors: (k, dim) new vectors.

        Returns:
            The number of rows written (k).
        """
        rows = self.key_rows(item_ids, cohort_ids)
        vectors = torch.as_tensor(vectors, dtype=torch.float32)
        if vectors.shape != (len(rows), self.dim):
            raise SchemaError(f"vectors must be ({len(rows)}, {self.dim}), got {tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise SchemaError("cover vectors hold NaN/inf")
        self._write(self.config.table, rows, vectors, column=0)
        return len(rows)

    def load_reward(self, item_ids: np.ndarray, cohort_ids: np.ndarray, reward: RewardTables) -> None:
        """Writes the reward tables: the reward side of the covers `item_ids`/`cohort_ids` and every user.

        Args:
            item_ids: (k,) item ids of covers this module holds, in the rows of `reward.cover_vectors`.
            cohort_ids: (k,) their cohort ids.
            reward: the factored reward model; its users and width must match the module's.
        """
        if not hasattr(self, "user_rows"):
            raise ValueError(
                "this CoverFeatures has no reward tables: construct it with user_ids and reward_dim"
            )
        users = torch.as_tensor(np.asarray(reward.user_ids, dtype=np.int64))
        if (
            reward.dim != self.reward_dim
            or len(users) != self.n_users
            or not bool((self._user_rows(users) > 0).all())
        ):
            raise SchemaError(
                f"reward tables (width {reward.dim}, {len(reward.user_ids)} users) do not match the module's "
                f"(width {self.reward_dim}, {self.n_users} users)"
            )
        rows = self.key_rows(item_ids, cohort_ids)
        cover = np.concatenate([reward.cover_vectors, np.asarray(reward.cover_logits)[:, None]], axis=1)
        if cover.shape != (len(rows), self.reward_dim + 1):
            raise SchemaError(
                f"reward cover rows must be ({len(rows)}, {self.reward_dim}) + logits, got {cover.shape}"
            )
        self._write(self.config.table, rows, torch.as_tensor(cover, dtype=torch.float32), column=self.dim)
        user_side = np.concatenate(
            [
                np.append(reward.generic_vector, reward.generic_bias)[None],
                np.concatenate([reward.user_vectors, np.asarray(reward.user_bias)[:, None]], axis=1),
            ]
        )  # (1 + n_users, d + 1): the generic user, then users in reward.user_ids order
        user_rows = torch.cat([torch.zeros(1, dtype=torch.int64), self._user_rows(users)])
        user_side = torch.as_tensor(user_side, dtype=torch.float32)
        self._write(f"{self.config.table}_users", user_rows, user_side, column=0)
        self.platt.copy_(torch.tensor(reward.platt, dtype=torch.float32))

    def key_rows(self, item_ids: np.ndarray, cohort_ids: np.ndarray) -> torch.Tensor:
        """Table rows (k,) int64 of stored (item, cohort) keys; a key the module does not hold raises."""
        items = torch.from_numpy(np.array(item_ids, dtype=np.int64))  # a copy: ids may be read-only views
        cohorts = torch.from_numpy(np.array(cohort_ids, dtype=np.int64))
        if items.shape != cohorts.shape or items.ndim != 1:
            raise SchemaError(
                f"item_ids and cohort_ids must be (k,) alike, got {tuple(items.shape)}, {tuple(cohorts.shape)}"
            )
        item_pos, item_known = self._item_slots(items)
        col, cohort_known = self._cohort_columns(cohorts)
        rows = self.rows[item_pos, col].long() * item_known * cohort_known  # (k,) row + 1, 0 = not held
        if not (held := rows > 0).all():
            bad = torch.stack([items[~held], cohorts[~held]], dim=1)[:5].tolist()
            raise UnknownIdError(
                f"{int((~held).sum())} (item_id, cohort_id) key(s) are not rows of this CoverFeatures, e.g. {bad}; "
                "a refresh that adds items or cohorts needs a new module (from_vectors / from_store)"
            )
        return rows - 1

    def _write(self, table: str, rows: torch.Tensor, values: torch.Tensor, column: int) -> None:
        """Copies values (k, w) into rows (k,) and columns column..column+w of `table`, shard by shard."""
        weight = self.tables.state_dict()[f"embedding_bags.{table}.weight"]
        columns = (column, column + values.shape[1])
        with torch.no_grad():
            if isinstance(weight, ShardedTensor):
                for shard in weight.local_shards():
                    (r0, c0), (nr, nc) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                    _copy_block(shard.tensor, r0, c0, nr, nc, rows, values, columns)
            elif weight.is_meta:
                raise ValueError(
                    "the cover table is on the meta device: shard it with DMP (or to_empty) first"
                )
            else:
                _copy_block(weight, 0, 0, weight.shape[0], weight.shape[1], rows, values, columns)

    # ------------------------------------------------------------------ forward
    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        """Cover vectors (and reward scores) of each row's items under the row's cohort.

        Args:
            features: KJT holding config.item_keys, config.cohort_key (one id per row) and, with reward
                tables, config.user_key (one id per row); other keys are ignored.

        Returns:
            KeyedTensor with `{key}_cover` (batch, dim) per item key and, with reward tables,
            `{key}_cover_reward` (batch, 1) = p(click) of the (mean-pooled) cover for the row's user.
        """
        config = self.config
        batch = features.stride()
        cohorts = self._one_per_row(features, config.cohort_key)  # (batch,)
        col, cohort_known = self._cohort_columns(cohorts)
        keys, values, lengths, counts = [], [], [], torch.zeros(len(COUNTS), dtype=torch.int64)
        for key in config.item_keys:
            jagged = features[key]
            ids, per_row = jagged.values().long(), jagged.lengths()  # (k,), (batch,)
            item_pos, item_known = self._item_slots(ids)
            id_col = torch.repeat_interleave(col, per_row)  # (k,) cohort column of each id's row
            exact = self.rows[item_pos, id_col] * item_known * torch.repeat_interleave(cohort_known, per_row)
            default = self.rows[item_pos, 0] * item_known  # (k,) the item's default cover, 0 = none
            row = torch.where(exact > 0, exact, default).long()  # (k,) table row + 1
            found = row > 0
            counts += torch.stack([(exact > 0).sum(), (found & (exact == 0)).sum(), (~found).sum()])
            row_of_id = torch.repeat_interleave(torch.arange(batch, device=ids.device), per_row)  # (k,)
            keys.append(key)
            values.append(row[found] - 1)
            lengths.append(torch.bincount(row_of_id[found], minlength=batch))  # (batch,) found covers per row
        if hasattr(self, "user_rows"):
            keys.append(_USER_FEATURE)
            values.append(self._user_rows(self._one_per_row(features, config.user_key)))
            lengths.append(torch.ones(batch, dtype=torch.int64, device=cohorts.device))
        with torch.no_grad():
            self.lookup_counts += counts.to(self.lookup_counts.device)
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=keys, values=torch.cat(values), lengths=torch.cat(lengths)
        )
        pooled = self.tables(kjt).to_dict()  # a sharded table answers lazily: to_dict waits for it
        names, tensors = [], []
        for key in config.item_keys:
            row = pooled[key].float()  # (batch, dim [+ reward_dim + 1])
            names.append(f"{key}_cover")
            tensors.append(row[:, : self.dim])
            if hasattr(self, "user_rows"):
                user = pooled[_USER_FEATURE].float()  # (batch, reward_dim + 1)
                d = self.reward_dim
                reward_vec = row[:, self.dim : self.dim + d]  # (batch, d)
                cover_logit = row[:, self.dim + d]  # (batch,)
                logit = cover_logit + (user[:, :d] * reward_vec).sum(dim=1) + user[:, d]  # (batch,)
                names.append(f"{key}_cover_reward")
                tensors.append(torch.sigmoid(self.platt[0] * logit + self.platt[1])[:, None])  # (batch, 1)
        if not config.trainable:
            tensors = [t.detach() for t in tensors]
        return KeyedTensor.from_tensor_list(names, tensors)

    @property
    def output_dim(self) -> int:
        """Width of the output's values: dim (+ 1 with reward) per item key."""
        return len(self.config.item_keys) * (self.dim + (1 if hasattr(self, "user_rows") else 0))

    def counts(self) -> dict[str, int]:
        """Keys looked up since construction (or `reset_counts`) on this process: exact, fallback, missing."""
        return dict(zip(COUNTS, self.lookup_counts.tolist(), strict=True))

    def reset_counts(self) -> None:
        """Sets the lookup counters to zero."""
        self.lookup_counts.zero_()

    def _cohort_columns(self, cohorts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid column of each cohort id (0 = default) and 1 where the id is DEFAULT_COHORT or a stored cohort."""
        pos, known = _positions(self.cohort_vocab, cohorts)
        default = cohorts == DEFAULT_COHORT
        return torch.where(known, pos + 1, 0), (known | default).long()

    def _item_slots(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _slots(ids, self.item_vocab, self.item_base, self.rows.shape[0])

    def _user_rows(self, users: torch.Tensor) -> torch.Tensor:
        slot, known = _slots(users.long(), self.user_vocab, self.user_base, self.user_rows.shape[0])
        return torch.where(known, self.user_rows[slot], 0)  # (batch,) row 0 = the generic user

    @staticmethod
    def _one_per_row(features: KeyedJaggedTensor, key: str) -> torch.Tensor:
        if key not in features.keys():
            raise SchemaError(f"the KeyedJaggedTensor has no key {key!r}; it holds {features.keys()}")
        jagged = features[key]
        if not bool((jagged.lengths() == 1).all()):
            raise SchemaError(f"KJT key {key!r} must hold exactly one id per row")
        return jagged.values().long()


class WithCovers(nn.Module):
    """Wraps a model called as model(dense (B, n), kjt) so that it reads the covers after its dense input:
    model(cat([dense, covers(kjt)]), kjt). Give the wrapped model n + covers.output_dim dense inputs."""

    def __init__(self, model: nn.Module, covers: CoverFeatures) -> None:
        super().__init__()
        self.model = model
        self.covers = covers

    def forward(self, dense_features: torch.Tensor, sparse_features: KeyedJaggedTensor) -> torch.Tensor:
        """The wrapped model's output with the covers appended to the dense input (B, n + output_dim)."""
        covers = self.covers(sparse_features).values()  # (B, output_dim)
        return self.model(torch.cat([dense_features, covers], dim=1), sparse_features)


def reward_tables(
    model: "PersonalizedRewardModel",
    item_ids: np.ndarray,
    tower_inputs: np.ndarray | torch.Tensor,
    user_ids: np.ndarray | None = None,
) -> RewardTables:
    """Factors a fitted personalized reward model into per-cover and per-user rows (see RewardTables).

    Args:
        model: the fitted PersonalizedRewardModel.
        item_ids: (n,) item id of each cover (items unseen in fit get no item bias, as in `predict`).
        tower_inputs: what the model's cover tower reads, one row per cover: (n, feat_dim) image-encoder
            features ("embedding" tower) or (n, 3, S, S) pixels ("cnn" tower).
        user_ids: users to tabulate; None = every user the model was fitted on.

    Returns:
        RewardTables whose scores equal `model.predict` for those (user, cover) pairs.
    """
    net = model.net_.eval()
    items = np.asarray(item_ids, dtype=np.int64)
    inputs = torch.as_tensor(np.asarray(tower_inputs), dtype=torch.float32)
    if len(inputs) != len(items):
        raise SchemaError(f"tower_inputs has {len(inputs)} rows for {len(items)} item ids")
    item_rows = torch.as_tensor(model._item_rows(items, strict=net.title is not None))
    vectors, logits = [], []
    with torch.no_grad():
        for start in range(0, len(items), 4096):
            rows = item_rows[start : start + 4096]
            titles = net.title_table[rows] if net.title is not None else None  # (b, title_dim)
            c = net.cover_vec(inputs[start : start + 4096], titles)  # (b, d)
            vectors.append(c)
            logits.append(net.generic_logit(c, rows))  # (b,)
        users = model.user_ids_ if user_ids is None else np.asarray(user_ids, dtype=np.int64)
        everyone = np.concatenate([[-1], users])  # the generic user first
        if model.config.use_user:
            user_vectors = model.user_vectors(everyone).numpy()  # (1 + n_users, d)
            user_bias = net.user_bias(torch.as_tensor(model._user_rows(everyone)))[:, 0].numpy()
        else:  # a non-personalized reward: the score is the cover's own logit
            user_vectors = np.zeros((len(everyone), net.cover_norm.num_features), dtype=np.float32)
            user_bias = np.zeros(len(everyone), dtype=np.float32)
    return RewardTables(
        cover_vectors=torch.cat(vectors).numpy(),
        cover_logits=torch.cat(logits).numpy(),
        user_ids=users,
        user_vectors=user_vectors[1:],
        user_bias=user_bias[1:],
        generic_vector=user_vectors[0],
        generic_bias=float(user_bias[0]),
        platt=tuple(float(v) for v in model.platt_),
    )


def read_refresh_vectors(folder: str | Path, image_encoder: nn.Module) -> tuple[pl.DataFrame, torch.Tensor]:
    """Keys (item_id, cohort_id) and image-encoder vectors (n, dim) of every cover in a refresh folder.

    The manifest is read with `read_manifest` and every cover checked against its sha256 (CheckpointError
    naming the cover otherwise).
    """
    from icg_rec.cohorts.refresh import read_manifest

    folder = Path(folder)
    path = folder / "manifest.parquet"
    if not path.is_file():
        raise CheckpointError(
            f"{folder} holds no manifest.parquet: expected the output folder of a cover refresh"
        )
    manifest = read_manifest(path)  # checksum, key form, hashes: refused if damaged
    cache = CoverCache(folder / "covers")
    parts = []
    with torch.no_grad():
        for start in range(0, manifest.height, _ENCODE_BATCH):
            rows = manifest.slice(start, _ENCODE_BATCH).select("key", "sha256").iter_rows()
            covers = torch.stack([cache.get(key, sha256) for key, sha256 in rows])  # (b, 3, H, W), verified
            parts.append(image_encoder(covers).float())  # (b, dim)
    return manifest.select("item_id", "cohort_id"), torch.cat(parts)


def _check_config(config: CoverFeaturesConfig) -> None:
    if config.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {config.dtype!r}")
    if not config.item_keys:
        raise ValueError("item_keys must name at least one KJT key of item ids")
    named = [*config.item_keys, config.cohort_key]
    if len(set(named)) != len(named):
        raise ValueError(f"item_keys and cohort_key must be distinct KJT keys, got {named}")


@dataclass
class _SlotIndex:
    """How ids map to slots 0..size-1 (see `_slot_index`)."""

    vocab: np.ndarray  # sorted unique ids; empty when slot = id - base
    base: int  # the smallest id (dense ids)
    slots: np.ndarray  # slot of each input id
    size: int  # number of slots


def _slot_index(ids: np.ndarray) -> _SlotIndex:
    """Slots of ids: id - min(ids) when the distinct ids fill at least half of min..max (a lookup is one
    subtraction, no search: a binary search over millions of ids misses the cache ~20 times per id),
    else the position in the sorted vocabulary (torch.searchsorted at lookup)."""
    low, high = int(ids.min()), int(ids.max())
    span = high - low + 1
    if span <= 2 * len(ids):
        present = np.zeros(span, dtype=bool)
        present[ids - low] = True
        if span <= 2 * int(present.sum()):
            return _SlotIndex(np.zeros(0, dtype=np.int64), low, ids - low, span)
    vocab, slots = np.unique(ids, return_inverse=True)
    return _SlotIndex(vocab, 0, slots, len(vocab))


def _slots(
    ids: torch.Tensor, vocab: torch.Tensor, base: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot of each id (0 where unknown) and whether it is known, for a `_slot_index`."""
    if len(vocab) == 0:
        slot = ids - base
        known = (slot >= 0) & (slot < size)
        return torch.where(known, slot, 0), known
    return _positions(vocab, ids)


def _key_grid(item_ids: np.ndarray, cohort_ids: np.ndarray) -> tuple[_SlotIndex, np.ndarray, np.ndarray]:
    """(item slots, cohort vocabulary without the default, int32 grid of row + 1 per (item slot, cohort))."""
    items = np.asarray(item_ids)
    cohorts = np.asarray(cohort_ids)
    if items.ndim != 1 or items.shape != cohorts.shape or len(items) == 0:
        raise SchemaError(
            f"expected (n,) item ids and (n,) cohort ids with n > 0, got {items.shape}, {cohorts.shape}"
        )
    if not (np.issubdtype(items.dtype, np.integer) and np.issubdtype(cohorts.dtype, np.integer)):
        raise SchemaError(f"item and cohort ids must be integers, got {items.dtype}, {cohorts.dtype}")
    if len(items) >= 2**31 - 1:
        raise SchemaError(f"{len(items)} covers exceed the int32 row grid")
    items, cohorts = items.astype(np.int64), cohorts.astype(np.int64)
    if (bad := cohorts[(cohorts < 0) & (cohorts != DEFAULT_COHORT)]).size:
        raise SchemaError(
            f"cohort ids must be >= 0 or DEFAULT_COHORT ({DEFAULT_COHORT}), got {np.unique(bad)[:5].tolist()}"
        )
    item_slots = _slot_index(items)
    cohort_vocab = np.unique(cohorts[cohorts != DEFAULT_COHORT])
    col = np.where(cohorts == DEFAULT_COHORT, 0, np.searchsorted(cohort_vocab, cohorts) + 1)
    flat = item_slots.slots * (len(cohort_vocab) + 1) + col  # (n,) cell of each key
    grid = np.zeros(item_slots.size * (len(cohort_vocab) + 1), dtype=np.int32)
    grid[flat] = np.arange(1, len(items) + 1, dtype=np.int32)
    if (written := int(np.count_nonzero(grid))) != len(items):
        cells, counts = np.unique(flat, return_counts=True)
        dup = cells[counts > 1][:3]
        examples = [(int(items[flat == c][0]), int(cohorts[flat == c][0])) for c in dup]
        raise SchemaError(f"{len(items) - written} duplicate (item_id, cohort_id) key(s), e.g. {examples}")
    return item_slots, cohort_vocab, grid.reshape(item_slots.size, len(cohort_vocab) + 1)


def _padded(width: int) -> int:
    """`width` rounded up to a multiple of 4: FBGEMM's sharded tables need local widths divisible by 4."""
    return -(-width // 4) * 4


def _positions(vocab: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Position of each id in the sorted `vocab` (clamped) and whether it is there."""
    if len(vocab) == 0:
        zeros = torch.zeros_like(ids)
        return zeros, zeros.bool()
    pos = torch.searchsorted(vocab, ids).clamp_(max=len(vocab) - 1)  # (k,)
    return pos, vocab[pos] == ids


def _copy_block(
    target: torch.Tensor,
    r0: int,
    c0: int,
    nr: int,
    nc: int,
    rows: torch.Tensor,
    values: torch.Tensor,
    columns: tuple[int, int],
) -> None:
    """Writes the part of values (k, w) at rows (k,) / columns [a, b) that falls in a block at (r0, c0) of (nr, nc)."""
    a, b = max(columns[0], c0), min(columns[1], c0 + nc)
    if a >= b:
        return
    block = values[:, a - columns[0] : b - columns[0]]  # (k, b - a) view: the columns this block holds
    inside = (rows >= r0) & (rows < r0 + nr)
    if not bool(inside.all()):
        rows, block = rows[inside], block[inside]
    target[(rows - r0).to(target.device), a - c0 : b - c0] = block.to(target)
