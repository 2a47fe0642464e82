"""User cohorts: k-means (faiss) over user embeddings, with ids that stay put across refits.

Covers are generated per (item, cohort), so a cohort id must keep meaning the same taste after a refit:
a refit starts from the previous centroids and then matches new centroids to old ones (Hungarian on
squared distance), so cohort 3 stays cohort 3. Each cohort carries a centroid version that changes only
when its centroid moved by more than `move_tolerance` (relative), which is what tells the cover refresh
which cohorts need new covers.
"""

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from icg_rec.errors import CheckpointError, IcgRecError, UnknownIdError
from icg_rec.io import (
    config_from_dict,
    load_weights,
    read_json,
    save_weights,
    verify_folder,
    write_folder,
    write_json,
)
from icg_rec.validation import lookup


@dataclass
class CohortConfig:
    """How users are grouped."""

    n_cohorts: int = 8  # number of cohorts (covers are generated per item x cohort)
    n_iter: int = 25  # k-means iterations
    move_tolerance: float = 0.05  # relative centroid shift below which a cohort keeps its version
    seed: int = 0  # k-means initialisation seed


class UserCohorts:
    """Fits cohorts of users from their embeddings; scikit-learn habits.

    Attributes (after fit):
        centroids_: (n_cohorts, dim) float32 centroids, row = cohort id.
        versions_: per cohort, a short content hash of its centroid; unchanged if it barely moved.
        user_ids_: (n_users,) int64 ids seen at fit, sorted.
        labels_: (n_users,) int64 cohort of each id in `user_ids_`.
    """

    def __init__(self, config: CohortConfig | None = None) -> None:
        self.config = config

    def fit(
        self, user_ids: np.ndarray, embeddings: np.ndarray, previous: "UserCohorts | None" = None
    ) -> "UserCohorts":
        """Clusters users; with `previous`, keeps its cohort ids and versions where centroids held still.

        Args:
            user_ids: (n_users,) unique int64 ids.
            embeddings: (n_users, dim) float user embeddings (e.g. the reward model's user vectors).
            previous: a fitted UserCohorts of the same size and width to stay consistent with.

        Returns:
            self.
        """
        config = self.config or CohortConfig()
        ids, x = _check_inputs(user_ids, embeddings)
        if len(ids) < config.n_cohorts:
            raise IcgRecError(f"{len(ids)} users cannot form {config.n_cohorts} cohorts")
        kmeans = faiss.Kmeans(
            x.shape[1], config.n_cohorts, niter=config.n_iter, seed=config.seed, verbose=False
        )
        if previous is None:
            kmeans.train(x)
            centroids = kmeans.centroids.copy()  # (n_cohorts, dim)
            versions = [_centroid_version(c) for c in centroids]
        else:
            _check_compatible(previous, config, x.shape[1])
            kmeans.train(x, init_centroids=previous.centroids_)
            old = previous.centroids_
            new = kmeans.centroids.copy()
            cost = ((new[:, None, :] - old[None, :, :]) ** 2).sum(-1)  # (new, old) squared distances
            rows, cols = linear_sum_assignment(cost)
            centroids = np.empty_like(new)
            centroids[cols] = new[rows]  # new centroid rows[i] takes old id cols[i]
            shift = np.linalg.norm(centroids - old, axis=1) / np.maximum(np.linalg.norm(old, axis=1), 1e-12)
            versions = [
                previous.versions_[k] if shift[k] < config.move_tolerance else _centroid_version(centroids[k])
                for k in range(config.n_cohorts)
            ]
        order = np.argsort(ids, kind="stable")
        self.centroids_ = centroids
        self.versions_ = versions
        self.user_ids_ = ids[order]
        self.labels_ = _nearest(centroids, x[order])
        return self

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Nearest cohort of each embedding (new users included): (n,) int64."""
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.centroids_.shape[1]:
            raise IcgRecError(f"embeddings must be (n, {self.centroids_.shape[1]}); got {x.shape}")
        return _nearest(self.centroids_, x)

    def cohort_of(self, user_ids: np.ndarray) -> np.ndarray:
        """Cohort of users seen at fit; an unseen id raises UnknownIdError (use `predict` for new users)."""
        ids = np.asarray(user_ids, dtype=np.int64)
        pos, known = lookup(self.user_ids_, ids)
        unknown = ~known
        if unknown.any():
            raise UnknownIdError(
                f"{int(unknown.sum())} user id(s) were not seen at fit, e.g. {ids[unknown][:5].tolist()}; "
                "assign new users with predict(embeddings)"
            )
        return self.labels_[pos]

    def save(self, folder: str | Path) -> Path:
        """Writes cohorts.safetensors + cohorts.json into `folder`, as a set (`write_folder`)."""
        folder = Path(folder)
        write_folder(folder, self._write)
        return folder

    def _write(self, folder: Path) -> None:
        save_weights(
            folder / "cohorts.safetensors",
            {
                "centroids": torch.from_numpy(self.centroids_),
                "user_ids": torch.from_numpy(self.user_ids_),
                "labels": torch.from_numpy(self.labels_),
            },
        )
        write_json(
            folder / "cohorts.json",
            {"config": asdict(self.config or CohortConfig()), "versions": self.versions_},
        )

    @classmethod
    def load(cls, folder: str | Path) -> "UserCohorts":
        """Reads what `save` wrote; a missing, corrupt or inconsistent file raises CheckpointError naming it."""
        folder = Path(folder)
        verify_folder(folder, required=["cohorts.json", "cohorts.safetensors"])
        meta_path = folder / "cohorts.json"
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or (missing := {"config", "versions"} - set(meta)):
            raise CheckpointError(
                f"{meta_path} lacks key(s) {sorted(missing) if isinstance(meta, dict) else ['config', 'versions']}; "
                "expected config and versions"
            )
        tensors = load_weights(folder / "cohorts.safetensors")
        if missing := {"centroids", "user_ids", "labels"} - set(tensors):
            raise CheckpointError(f"{folder / 'cohorts.safetensors'} lacks tensor(s) {sorted(missing)}")
        if not isinstance(meta["config"], dict):
            raise CheckpointError(
                f"{meta_path}: config must be a table of CohortConfig fields, got {meta['config']!r}"
            )
        cohorts = cls(config_from_dict(CohortConfig, meta["config"], source=str(meta_path)))
        cohorts.centroids_ = tensors["centroids"].numpy()
        cohorts.user_ids_ = tensors["user_ids"].numpy()
        cohorts.labels_ = tensors["labels"].numpy()
        cohorts.versions_ = meta["versions"]
        _check_loaded(cohorts, folder)
        return cohorts


def _check_loaded(cohorts: "UserCohorts", folder: Path) -> None:
    """Refuses a loaded checkpoint whose parts disagree: every cohort needs a centroid and a version."""
    n = cohorts.config.n_cohorts
    versions, centroids = cohorts.versions_, cohorts.centroids_
    if not isinstance(versions, list) or not all(isinstance(v, str) and v for v in versions):
        raise CheckpointError(
            f"{folder / 'cohorts.json'}: versions must be a list of strings, got {versions!r}"
        )
    problems = []
    if len(versions) != n:
        problems.append(f"{len(versions)} versions")
    if centroids.ndim != 2 or len(centroids) != n:
        problems.append(f"centroids of shape {tuple(centroids.shape)}")
    if cohorts.user_ids_.shape != cohorts.labels_.shape or cohorts.user_ids_.ndim != 1:
        problems.append(f"{cohorts.user_ids_.shape} user ids for {cohorts.labels_.shape} labels")
    elif len(cohorts.labels_) and not ((cohorts.labels_ >= 0) & (cohorts.labels_ < n)).all():
        problems.append(f"labels outside [0, {n})")
    if problems:
        raise CheckpointError(
            f"{folder}: config says {n} cohorts, but the checkpoint holds " + ", ".join(problems)
        )


def _check_inputs(user_ids: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(user_ids, dtype=np.int64)
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or ids.shape != (x.shape[0],):
        raise IcgRecError(f"user_ids {ids.shape} and embeddings {x.shape} must be (n,) and (n, dim)")
    if not np.isfinite(x).all():
        raise IcgRecError(f"embeddings of {int((~np.isfinite(x)).any(1).sum())} user(s) hold NaN or inf")
    if len(np.unique(ids)) != len(ids):
        raise IcgRecError(f"user ids must be unique; got {len(ids) - len(np.unique(ids))} duplicate(s)")
    return ids, x


def _check_compatible(previous: "UserCohorts", config: CohortConfig, dim: int) -> None:
    if previous.centroids_.shape != (config.n_cohorts, dim):
        raise IcgRecError(
            f"previous cohorts have centroids {previous.centroids_.shape}; this fit needs ({config.n_cohorts}, {dim})"
        )


def _nearest(centroids: np.ndarray, x: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    _, nearest = index.search(x, 1)  # (n, 1)
    return nearest[:, 0].astype(np.int64)


def _centroid_version(centroid: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(centroid, dtype=np.float32).tobytes()).hexdigest()[:12]
