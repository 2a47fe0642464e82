"""Cover embeddings keyed by (item, cohort), with a counted fallback and faiss nearest-cover search."""

from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import polars as pl
import torch

from icg_rec.errors import SchemaError, UnknownIdError
from icg_rec.io import (
    config_from_dict,
    load_weights,
    read_json,
    save_weights,
    verify_folder,
    write_folder,
    write_json,
)

DEFAULT_COHORT = -1  # the cohort id of an item's default (non-personalized) cover
MISS_POLICIES = ("zero", "raise")


@dataclass
class StoreConfig:
    ivf_min_size: int = 20_000  # at or above this many vectors the index is IVF instead of flat
    nprobe: int = 8  # IVF lists searched per query
    projection_dim: int | None = None  # PCA width applied at build time; None keeps the input width
    miss_policy: str = "zero"  # no cover at all: "zero" (zero vector, has_cover=False) or "raise"
    seed: int = 0  # IVF k-means seed


@dataclass
class CoverLookup:
    """Vectors for a list of (item, cohort) keys, and how each was found."""

    vectors: np.ndarray  # (n, dim) float32; zeros where no cover was found
    has_cover: np.ndarray  # (n,) bool
    n_exact: int  # keys found as (item, cohort)
    n_fallback: int  # keys served by the item's default cover
    n_missing: int  # keys with no cover at all


class CoverEmbeddingStore:
    """Cover vectors per (item_id, cohort_id); cohort DEFAULT_COHORT holds an item's default cover.

    Lookup of (item, cohort) falls back to (item, DEFAULT_COHORT), then to the miss policy.
    A faiss index (cosine, flat or IVF by size) serves nearest-cover search and de-duplication.
    """

    def __init__(self, config: StoreConfig | None = None) -> None:
        self.config = config or StoreConfig()

    def build(
        self, item_ids: np.ndarray, cohort_ids: np.ndarray, vectors: np.ndarray
    ) -> "CoverEmbeddingStore":
        """Stores `vectors` under their keys, fits the optional PCA and builds the index.

        Args:
            item_ids: (n,) integer item ids.
            cohort_ids: (n,) integer cohort ids; DEFAULT_COHORT for an item's default cover.
            vectors: (n, d) float vectors.

        Returns:
            self.
        """
        if self.config.miss_policy not in MISS_POLICIES:
            raise ValueError(f"miss_policy must be one of {MISS_POLICIES}, got {self.config.miss_policy!r}")
        vectors = np.asarray(vectors, dtype=np.float32)
        item_ids, cohort_ids = np.asarray(item_ids, dtype=np.int64), np.asarray(cohort_ids, dtype=np.int64)
        if vectors.ndim != 2 or not (len(vectors) == len(item_ids) == len(cohort_ids)) or len(vectors) == 0:
            raise SchemaError(
                f"expected n item ids, n cohort ids and an (n, d) vector array with n > 0; got "
                f"{item_ids.shape}, {cohort_ids.shape}, {vectors.shape}"
            )
        if not np.isfinite(vectors).all():
            bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))[:5]
            raise SchemaError(
                f"cover vectors hold NaN/inf at rows {bad.tolist()} (item ids {item_ids[bad].tolist()})"
            )
        keys = pl.DataFrame({"item_id": item_ids, "cohort_id": cohort_ids})
        if (dup := keys.filter(keys.is_duplicated())).height:
            raise SchemaError(f"duplicate (item_id, cohort_id) keys, e.g. {dup.head(3).rows()}")
        self.input_dim_ = vectors.shape[1]
        if self.config.projection_dim is not None:
            self._fit_projection(vectors)
        self.keys_ = keys.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
        self.vectors_ = self.project(vectors)  # (n, dim)
        self._build_index()
        return self

    @property
    def dim(self) -> int:
        """Width of the stored (possibly projected) vectors."""
        return self.vectors_.shape[1]

    def _fit_projection(self, vectors: np.ndarray) -> None:
        k = self.config.projection_dim
        if not 0 < k <= min(vectors.shape):
            raise ValueError(f"projection_dim must be in 1..{min(vectors.shape)} (min of n, d), got {k}")
        self.projection_mean_ = vectors.mean(axis=0)  # (d,)
        _, _, vt = np.linalg.svd(vectors - self.projection_mean_, full_matrices=False)  # vt (min(n,d), d)
        self.projection_ = np.ascontiguousarray(vt[:k].T, dtype=np.float32)  # (d, k)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Maps raw-width vectors (n, input_dim) to the stored width (n, dim); identity without PCA."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.input_dim_:
            raise SchemaError(f"expected vectors of shape (n, {self.input_dim_}), got {vectors.shape}")
        if self.config.projection_dim is None:
            return vectors
        return ((vectors - self.projection_mean_) @ self.projection_).astype(np.float32)  # (n, k)

    def _build_index(self) -> None:
        n, dim = self.vectors_.shape
        if n < self.config.ivf_min_size:
            self.index_ = faiss.IndexFlatIP(dim)
        else:
            n_lists = int(4 * np.sqrt(n))
            quantizer = faiss.IndexFlatIP(dim)
            self.index_ = faiss.IndexIVFFlat(quantizer, dim, n_lists, faiss.METRIC_INNER_PRODUCT)
            self.index_.cp.seed = self.config.seed
            self.index_.train(_unit(self.vectors_))
            self.index_.nprobe = self.config.nprobe
        self.index_.add(_unit(self.vectors_))

    def lookup(self, item_ids: np.ndarray, cohort_ids: np.ndarray) -> CoverLookup:
        """Vectors for keys: exact (item, cohort), else (item, DEFAULT_COHORT), else the miss policy.

        Args:
            item_ids: (n,) integer item ids.
            cohort_ids: (n,) integer cohort ids (DEFAULT_COHORT asks for the default cover).

        Returns:
            A CoverLookup with the vectors and the exact / fallback / missing counts.
        """
        query = pl.DataFrame(
            {
                "item_id": np.asarray(item_ids, dtype=np.int64),
                "cohort_id": np.asarray(cohort_ids, dtype=np.int64),
            }
        )
        defaults = self.keys_.filter(pl.col("cohort_id") == DEFAULT_COHORT).select(
            "item_id", default_row="row"
        )
        found = query.join(self.keys_, on=["item_id", "cohort_id"], how="left", maintain_order="left").join(
            defaults, on="item_id", how="left", maintain_order="left"
        )
        exact = found["row"].is_not_null().to_numpy()
        rows = found["row"].fill_null(found["default_row"])
        has_cover = rows.is_not_null().to_numpy()
        rows = rows.fill_null(0).to_numpy()
        n_missing = int((~has_cover).sum())
        if n_missing and self.config.miss_policy == "raise":
            missing = query.filter(pl.Series(~has_cover)).head(5).rows()
            raise UnknownIdError(
                f"{n_missing} (item_id, cohort_id) key(s) have no cover and no default, e.g. {missing}"
            )
        vectors = np.zeros((len(query), self.dim), dtype=np.float32)  # (n, dim)
        vectors[has_cover] = self.vectors_[rows[has_cover]]
        n_exact = int(exact.sum())
        return CoverLookup(vectors, has_cover, n_exact, int(has_cover.sum()) - n_exact, n_missing)

    def nearest(self, queries: np.ndarray, k: int = 10) -> tuple[pl.DataFrame, np.ndarray]:
        """The k stored covers most cosine-similar to each query.

        Args:
            queries: (n, input_dim) raw-width vectors (projected here if the store has a PCA).
            k: neighbours per query.

        Returns:
            (keys, cosine): keys has columns query, rank, item_id, cohort_id (n * k rows, -1 where the
            index had fewer than k hits); cosine is (n, k) float32.
        """
        scores, rows = self.index_.search(_unit(self.project(queries)), k)  # (n, k) each
        flat = rows.reshape(-1)
        item = np.where(flat >= 0, self.keys_["item_id"].to_numpy()[flat], -1)
        cohort = np.where(flat >= 0, self.keys_["cohort_id"].to_numpy()[flat], -1)
        keys = pl.DataFrame(
            {
                "query": np.repeat(np.arange(len(rows)), k),
                "rank": np.tile(np.arange(k), len(rows)),
                "item_id": item,
                "cohort_id": cohort,
            }
        )
        return keys, scores

    def duplicates(self, threshold: float = 0.99, k: int = 5) -> pl.DataFrame:
        """Pairs of stored covers whose cosine similarity is at least `threshold` (each pair once).

        Args:
            threshold: cosine similarity at or above which two covers count as duplicates.
            k: neighbours examined per cover (a cover with more duplicates than k - 1 shows fewer).

        Returns:
            Frame with item_id, cohort_id, dup_item_id, dup_cohort_id, cosine.
        """
        scores, rows = self.index_.search(_unit(self.vectors_), k)  # (n, k) each
        src = np.repeat(np.arange(len(rows)), k)
        dst, cos = rows.reshape(-1), scores.reshape(-1)
        keep = (dst > src) & (cos >= threshold)
        item, cohort = self.keys_["item_id"].to_numpy(), self.keys_["cohort_id"].to_numpy()
        return pl.DataFrame(
            {
                "item_id": item[src[keep]],
                "cohort_id": cohort[src[keep]],
                "dup_item_id": item[dst[keep]],
                "dup_cohort_id": cohort[dst[keep]],
                "cosine": cos[keep],
            }
        )

    def save(self, folder: str | Path) -> Path:
        """Writes store.safetensors (keys, vectors, PCA) and store.json (config), no pickle, as a set (`write_folder`)."""
        folder = Path(folder)
        write_folder(folder, self._write)
        return folder

    def _write(self, folder: Path) -> None:
        tensors = {
            "item_id": torch.from_numpy(self.keys_["item_id"].to_numpy().copy()),
            "cohort_id": torch.from_numpy(self.keys_["cohort_id"].to_numpy().copy()),
            "vectors": torch.from_numpy(self.vectors_),
        }
        if self.config.projection_dim is not None:
            tensors["projection_mean"] = torch.from_numpy(self.projection_mean_)
            tensors["projection"] = torch.from_numpy(self.projection_)
        save_weights(folder / "store.safetensors", tensors)
        write_json(folder / "store.json", {"config": asdict(self.config), "input_dim": self.input_dim_})

    @classmethod
    def load(cls, folder: str | Path) -> "CoverEmbeddingStore":
        """Reads a store written by `save` and rebuilds its index; a changed or missing file raises CheckpointError."""
        folder = Path(folder)
        verify_folder(folder, required=["store.json", "store.safetensors"])
        meta = read_json(folder / "store.json")
        store = cls(config_from_dict(StoreConfig, meta["config"], source=str(folder / "store.json")))
        tensors = load_weights(folder / "store.safetensors")
        store.input_dim_ = meta["input_dim"]
        if store.config.projection_dim is not None:
            store.projection_mean_ = tensors["projection_mean"].numpy()
            store.projection_ = tensors["projection"].numpy()
        keys = pl.DataFrame(
            {"item_id": tensors["item_id"].numpy(), "cohort_id": tensors["cohort_id"].numpy()}
        )
        store.keys_ = keys.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
        store.vectors_ = tensors["vectors"].numpy()
        store._build_index()
        return store


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), contiguous float32 for faiss."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (n, 1)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
