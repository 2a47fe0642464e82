"""Polars interaction frames -> TorchRec `Batch`es: id rows as a KeyedJaggedTensor, dense floats, labels.

Each sparse column gets a vocabulary at fit: ids seen in training map to rows 1..n, row 0 is the
unknown/out-of-vocabulary row, and every encode counts how many ids fell there. A sparse column is
an integer id per row or a list of ids per row (pl.List, e.g. a user's last clicked items): the KJT
is jagged and the ranker mean-pools a list's embeddings. The dense input is, in this order: the
scalar columns of `dense` (standardized with training mean/std; a personalized reward score enters
here as a column), the vector columns of `embeddings`, then, with a cover store, the cover vector of
(item, cohort of the user) and a `has_cover` 0/1 flag, then for each of `cover_lists` the mean cover
of the listed items under the user's cohort. An ids-only spec gets a constant 1 as its dense input
(DLRM's dense tower needs one).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from icg_rec.doctor import missing_torchrec_message
from icg_rec.errors import SchemaError
from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore
from icg_rec.io import load_weights, read_json, save_weights, verify_folder, write_folder, write_json
from icg_rec.validation import check_columns, table_rows

try:
    from torchrec.datasets.utils import Batch
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor
except (ImportError, OSError) as error:  # a missing or mixed FBGEMM build
    raise ImportError(missing_torchrec_message(error)) from error

COVER_KEY = "cover"  # dense key of the store's cover vector
HAS_COVER_KEY = "has_cover"  # dense key of the 0/1 flag: 1 where the store had a cover
BIAS_KEY = "bias"  # a constant 1: the dense input of an ids-only model (DLRM's dense tower needs one)


@dataclass
class JaggedIds:
    """Vocabulary rows of one sparse column, a list per frame row (of length 1 for a one-id column)."""

    values: torch.Tensor  # (total,) int64 vocabulary rows; 0 = unknown id
    offsets: torch.Tensor  # (n + 1,) int64: row r holds values[offsets[r] : offsets[r + 1]]

    def take(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, lengths) of `rows` (int64 (b,)), row after row."""
        starts = self.offsets[rows]  # (b,)
        lengths = self.offsets[rows + 1] - starts  # (b,)
        if len(self.values) == len(self.offsets) - 1:  # one id per row
            return self.values[rows], lengths
        shift = starts - (torch.cumsum(lengths, 0) - lengths)  # (b,) source minus destination start
        index = torch.repeat_interleave(shift, lengths) + torch.arange(int(lengths.sum()))  # (total_b,)
        return self.values[index], lengths


@dataclass
class EncodedFrame:
    """A whole frame as tensors, ready to be cut into batches, with what encoding had to count."""

    ids: dict[str, JaggedIds]  # sparse column -> vocabulary rows of each frame row
    dense: torch.Tensor  # (n, dense_width) float32
    labels: torch.Tensor  # (n,) float32; zeros where the frame has no label column
    n_unknown: dict[
        str, int
    ]  # sparse column -> ids not in the training vocabulary (rows, for one-id columns)
    n_cover_exact: int  # rows served the (item, cohort) cover
    n_cover_fallback: int  # rows served the item's default cover
    n_cover_missing: int  # rows with no cover (zero vector, has_cover = 0)
    n_default_cohort: int  # rows whose user has no cohort in the mapping (default cover asked)
    list_covers: dict[str, dict[str, int]]  # cover list column -> listed items' exact / fallback / missing

    def __len__(self) -> int:
        return self.labels.shape[0]


class FeatureProvider:
    """Turns interaction frames into TorchRec batches; learns id vocabularies and dense scaling at fit.

    Args:
        sparse: id columns, one embedding table each: an integer id or a list of them (pl.List) per row.
        dense: float scalar columns (standardized with the training mean/std).
        embeddings: vector columns, pl.Array(Float32, d), used as they are.
        label: the 0/1 click column (optional at encode: absent -> zero labels).
        cover_store: optional store; adds the cover of (row's item_id, cohort of row's user_id).
        user_cohorts: optional frame (user_id, cohort_id); users absent from it get DEFAULT_COHORT.
        cover_lists: list columns of item ids (with a cover store) whose covers, under the row user's
            cohort, are averaged into a dense `{column}_cover` vector; items without any cover are left
            out of the mean (zeros when none has one).
    """

    def __init__(
        self,
        sparse: list[str],
        dense: list[str] | None = None,
        embeddings: list[str] | None = None,
        label: str = "label",
        cover_store: CoverEmbeddingStore | None = None,
        user_cohorts: pl.DataFrame | None = None,
        cover_lists: list[str] | None = None,
    ) -> None:
        self.sparse = sparse
        self.dense = dense or []
        self.embeddings = embeddings or []
        self.label = label
        self.cover_store = cover_store
        self.user_cohorts = user_cohorts
        self.cover_lists = cover_lists or []

    def fit(self, train: pl.DataFrame) -> "FeatureProvider":
        """Learns vocabularies (sparse), mean/std (dense) and embedding widths from `train`.

        Returns:
            self, with `vocab_`, `lists_`, `dense_mean_`, `dense_std_` and `dense_keys_` set.
        """
        return self.fit_chunks([train])

    def fit_chunks(self, chunks: Iterable[pl.DataFrame]) -> "FeatureProvider":
        """`fit` on a log read piece by piece (e.g. `parquet_chunks`), in memory bounded by the largest
        piece and the vocabularies; the result equals `fit` on the concatenated pieces (up to rounding).

        Returns:
            self, fitted.
        """
        if not self.sparse:
            raise SchemaError("a TorchRec ranker needs at least one sparse (id) column")
        if self.cover_lists and self.cover_store is None:
            raise SchemaError(f"cover_lists {self.cover_lists} need a cover_store")
        if self.user_cohorts is not None:
            check_columns(self.user_cohorts, ["user_id", "cohort_id"], "user_cohorts")
            if (dup := self.user_cohorts.filter(pl.col("user_id").is_duplicated())).height:
                raise SchemaError(f"user_cohorts maps a user to several cohorts, e.g. {dup.head(4).rows()}")
        schema, n = None, 0
        vocab = {c: np.zeros(0, dtype=np.int64) for c in self.sparse}
        mean, m2 = np.zeros(len(self.dense)), np.zeros(len(self.dense))  # running mean, sum of squares (Chan)
        for train in chunks:
            if schema is None:
                schema = train.schema
                self.lists_ = [
                    c for c in self.sparse if c in train.columns and isinstance(schema[c], pl.List)
                ]
            elif train.schema != schema:
                raise SchemaError(
                    f"a chunk of the training log has schema {train.schema}, the first had {schema}"
                )
            if train.height == 0:
                continue
            self._check(train, with_label=True)
            vocab = {c: np.union1d(v, _flat_ids(train[c])[0]) for c, v in vocab.items()}
            dense = _scalars(train, self.dense)  # (rows, n_dense) float64
            chunk_mean = dense.mean(axis=0)  # (n_dense,)
            delta, total = chunk_mean - mean, n + train.height
            m2 += ((dense - chunk_mean) ** 2).sum(axis=0) + delta**2 * n * train.height / total
            mean, n = mean + delta * train.height / total, total
        if n == 0:
            raise SchemaError("the training frame is empty")
        self.vocab_ = vocab
        self.dense_mean_ = mean  # (n_dense,)
        std = np.sqrt(m2 / n)  # (n_dense,)
        self.dense_std_ = np.where(std > 0, std, 1.0)
        keys = [(c, 1) for c in self.dense]
        keys += [(c, schema[c].size) for c in self.embeddings]
        if self.cover_store is not None:
            keys += [(COVER_KEY, self.cover_store.dim), (HAS_COVER_KEY, 1)]
        keys += [(f"{c}_cover", self.cover_store.dim) for c in self.cover_lists]
        self.dense_keys_ = keys or [(BIAS_KEY, 1)]
        return self

    @property
    def dense_width(self) -> int:
        """Width of the dense input (sum of the dense key widths)."""
        return sum(w for _, w in self.dense_keys_)

    def table_sizes(self) -> dict[str, int]:
        """Rows per sparse column's embedding table: its vocabulary plus the unknown row 0."""
        return {c: len(v) + 1 for c, v in self.vocab_.items()}

    def encode(self, frame: pl.DataFrame) -> EncodedFrame:
        """Encodes every row of `frame` (no row is dropped; unknown ids and missing covers are counted)."""
        with_label = self.label in frame.columns
        self._check(frame, with_label=with_label)
        for c in self.embeddings:
            if frame.schema[c].size != dict(self.dense_keys_)[c]:
                raise SchemaError(
                    f"embedding column {c!r} has width {frame.schema[c].size}; fitted on {dict(self.dense_keys_)[c]}"
                )
        ids, n_unknown = {}, {}
        for c in self.sparse:
            (values, offsets), vocab = _flat_ids(frame[c]), self.vocab_[c]
            rows = table_rows(vocab, values)
            ids[c] = JaggedIds(torch.from_numpy(rows), torch.from_numpy(offsets))
            n_unknown[c] = int((rows == 0).sum())
        parts = [((_scalars(frame, self.dense) - self.dense_mean_) / self.dense_std_).astype(np.float32)]
        parts += [frame[c].to_numpy().astype(np.float32) for c in self.embeddings]
        cover_counts, list_covers = [0, 0, 0, 0], {}
        if self.cover_store is not None:
            cohorts, n_default = self._cohorts(frame)
            found = self.cover_store.lookup(frame["item_id"].to_numpy(), cohorts)
            parts += [found.vectors, found.has_cover.astype(np.float32)[:, None]]
            cover_counts = [found.n_exact, found.n_fallback, found.n_missing, n_default]
            for c in self.cover_lists:
                mean, list_covers[c] = self._mean_list_cover(frame[c], cohorts)
                parts.append(mean)
        if self.dense_keys_ == [(BIAS_KEY, 1)]:
            parts.append(np.ones((frame.height, 1), dtype=np.float32))
        labels = frame[self.label].to_numpy() if with_label else np.zeros(frame.height)
        return EncodedFrame(
            ids,
            torch.from_numpy(np.concatenate(parts, axis=1)),  # (n, dense_width)
            torch.from_numpy(labels.astype(np.float32)),  # (n,)
            n_unknown,
            *cover_counts,
            list_covers,
        )

    def _mean_list_cover(self, items: pl.Series, cohorts: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        """(n, dim) mean cover of each row's listed items under the row's cohort, and the lookup counts."""
        values, offsets = _flat_ids(items)
        lengths = np.diff(offsets)  # (n,)
        found = self.cover_store.lookup(values, np.repeat(cohorts, lengths))
        row = np.repeat(np.arange(len(lengths)), lengths)  # (total,) frame row of each listed item
        sums = np.zeros((len(lengths), self.cover_store.dim), dtype=np.float64)  # (n, dim)
        np.add.at(sums, row[found.has_cover], found.vectors[found.has_cover])
        counts = np.bincount(row[found.has_cover], minlength=len(lengths))  # (n,) covers found per row
        mean = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)  # zeros where none was found
        return mean, {"exact": found.n_exact, "fallback": found.n_fallback, "missing": found.n_missing}

    def batch(self, encoded: EncodedFrame, rows: torch.Tensor) -> Batch:
        """The TorchRec Batch of `rows` (int64 indices) of an encoded frame; list columns are jagged."""
        values, lengths = zip(*(encoded.ids[c].take(rows) for c in self.sparse), strict=True)
        sparse = KeyedJaggedTensor.from_lengths_sync(
            keys=self.sparse,
            values=torch.cat(values),  # key-major: all rows of key 0, then key 1, ...
            lengths=torch.cat(lengths).int(),
        )
        return Batch(dense_features=encoded.dense[rows], sparse_features=sparse, labels=encoded.labels[rows])

    def batches(
        self, encoded: EncodedFrame, batch_size: int, shuffle: bool = False, seed: int = 0
    ) -> Iterator[Batch]:
        """Yields Batches of `batch_size` rows (the last may be smaller), shuffled with `seed` if asked."""
        for rows in batch_rows(len(encoded), batch_size, shuffle, seed):
            yield self.batch(encoded, rows)

    def keyed_dense(self, dense: torch.Tensor) -> KeyedTensor:
        """Views a (b, dense_width) dense tensor as a KeyedTensor by feature, for custom architectures."""
        keys, widths = zip(*self.dense_keys_, strict=True)
        return KeyedTensor(keys=list(keys), length_per_key=list(widths), values=dense)

    def _cohorts(self, frame: pl.DataFrame) -> tuple[np.ndarray, int]:
        if self.user_cohorts is None:
            return np.full(frame.height, DEFAULT_COHORT, dtype=np.int64), frame.height
        cohort = frame.select("user_id").join(
            self.user_cohorts.select("user_id", "cohort_id"), on="user_id", how="left", maintain_order="left"
        )["cohort_id"]
        return cohort.fill_null(DEFAULT_COHORT).to_numpy().astype(np.int64), cohort.null_count()

    def columns(self, with_label: bool = True) -> list[str]:
        """The frame columns `encode` reads (the label is optional at encode)."""
        needed = [*self.sparse, *self.dense, *self.embeddings, *self.cover_lists]
        needed += [self.label] if with_label else []
        needed += ["item_id", "user_id"] if self.cover_store is not None else []
        return list(dict.fromkeys(needed))

    def _check(self, frame: pl.DataFrame, with_label: bool) -> None:
        needed = self.columns(with_label)
        check_columns(frame, needed, "frame")
        for c in self.sparse:
            kind = "a list of integer ids (pl.List)" if c in self.lists_ else "an integer id"
            if _is_id_list(frame.schema[c]) != (c in self.lists_) or not _integer_ids(frame.schema[c]):
                raise SchemaError(f"sparse column {c!r} must be {kind}, as at fit; got {frame.schema[c]}")
        for c in self.cover_lists:
            if not (_is_id_list(frame.schema[c]) and _integer_ids(frame.schema[c])):
                raise SchemaError(
                    f"cover list column {c!r} must be a list of integer item ids, got {frame.schema[c]}"
                )
        for c in [*self.lists_, *self.cover_lists]:
            if n := int((frame[c].list.len() - frame[c].list.drop_nulls().list.len()).sum() or 0):
                raise SchemaError(f"list column {c!r} holds {n} null id(s) inside its lists")
        for c in self.embeddings:
            if not isinstance(frame.schema[c], pl.Array):
                raise SchemaError(
                    f"embedding column {c!r} must be pl.Array(Float32, d), got {frame.schema[c]}"
                )
        for c in needed:
            if n := frame[c].null_count():
                raise SchemaError(f"column {c!r} holds {n} null(s); the TorchRec provider expects none")
        if with_label and not np.isin(frame[self.label].to_numpy(), [0, 1]).all():
            raise SchemaError(f"label column {self.label!r} must hold only 0 and 1")
        for c in self.dense:
            if not np.isfinite(frame[c].cast(pl.Float64).to_numpy()).all():
                raise SchemaError(
                    f"dense column {c!r} holds NaN/inf; the TorchRec provider expects finite values"
                )

    def save(self, folder: str | Path) -> Path:
        """Writes provider.safetensors (vocabularies, scaling, cohorts), provider.json and the store, as a set."""
        folder = Path(folder)
        write_folder(folder, self._write)
        return folder

    def _write(self, folder: Path) -> None:
        tensors = {f"vocab.{c}": torch.from_numpy(v) for c, v in self.vocab_.items()}
        tensors["dense_mean"] = torch.from_numpy(self.dense_mean_.astype(np.float64))
        tensors["dense_std"] = torch.from_numpy(self.dense_std_.astype(np.float64))
        if self.user_cohorts is not None:
            tensors["cohorts.user_id"] = torch.from_numpy(
                self.user_cohorts["user_id"].to_numpy().astype(np.int64)
            )
            tensors["cohorts.cohort_id"] = torch.from_numpy(
                self.user_cohorts["cohort_id"].to_numpy().astype(np.int64)
            )
        save_weights(folder / "provider.safetensors", tensors)
        columns = {
            "sparse": self.sparse,
            "dense": self.dense,
            "embeddings": self.embeddings,
            "label": self.label,
            "cover_lists": self.cover_lists,
        }
        meta = {
            "columns": columns,
            "lists": self.lists_,
            "dense_keys": self.dense_keys_,
            "cover_store": self.cover_store is not None,
        }
        write_json(folder / "provider.json", meta)
        if self.cover_store is not None:
            self.cover_store.save(folder / "cover_store")

    @classmethod
    def load(cls, folder: str | Path) -> "FeatureProvider":
        """Reads a provider written by `save` (with its cover store, if it had one), verified first."""
        folder = Path(folder)
        verify_folder(folder, required=["provider.json", "provider.safetensors"])
        meta = read_json(folder / "provider.json")
        tensors = load_weights(folder / "provider.safetensors")
        cohorts = None
        if "cohorts.user_id" in tensors:
            cohorts = pl.DataFrame(
                {
                    "user_id": tensors["cohorts.user_id"].numpy(),
                    "cohort_id": tensors["cohorts.cohort_id"].numpy(),
                }
            )
        store = CoverEmbeddingStore.load(folder / "cover_store") if meta["cover_store"] else None
        provider = cls(**meta["columns"], cover_store=store, user_cohorts=cohorts)
        provider.vocab_ = {c: tensors[f"vocab.{c}"].numpy() for c in provider.sparse}
        provider.lists_ = meta.get("lists", [])  # written before list columns existed: none
        provider.dense_mean_ = tensors["dense_mean"].numpy()
        provider.dense_std_ = tensors["dense_std"].numpy()
        provider.dense_keys_ = [(k, w) for k, w in meta["dense_keys"]]
        return provider


def batch_rows(n: int, batch_size: int, shuffle: bool, seed: int) -> list[torch.Tensor]:
    """Row indices of each batch: a seeded permutation (or 0..n-1) cut into `batch_size` pieces."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
    return list(torch.split(order, batch_size))


def _scalars(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """(n, len(columns)) float64 matrix of scalar columns."""
    if not columns:
        return np.zeros((frame.height, 0))
    return frame.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()


def _is_id_list(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.List)


def _integer_ids(dtype: pl.DataType) -> bool:
    """Whether a column holds integer ids, one per row or in lists."""
    return (dtype.inner if isinstance(dtype, pl.List) else dtype).is_integer()


def _flat_ids(column: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values (total,) int64, offsets (n + 1,) int64) of an id column, one id per row or lists."""
    if isinstance(column.dtype, pl.List):
        lengths = column.list.len().to_numpy().astype(np.int64)
        values = column.explode(empty_as_null=False).to_numpy().astype(np.int64)
    else:
        lengths = np.ones(len(column), dtype=np.int64)
        values = column.to_numpy().astype(np.int64)
    return values, np.concatenate([[0], np.cumsum(lengths)])
