"""A TorchRec DLRM / DLRM_DCN ranker behind the `Ranker` protocol, single-process or DMP under torchrun.

Embedding tables are trained by row-wise Adagrad fused into backward, MLPs by Adam. Under `torchrun`
(a process group is initialized) `fit` shards the tables with DistributedModelParallel (table-wise, or
row-wise on CUDA: `TorchRecConfig.sharding`); each process trains on its slice of every global batch, and
the loss is scaled so that gradients equal single-process gradients of the same global batch. The fitted
`model_` is always the plain, unsharded model (the best epoch by validation AUC), the same on every
process, on the ranker's `device`. With device="cuda" each process computes on cuda:LOCAL_RANK and the
process group is nccl; on CPU it is gloo. `fit_parquet` (CLI: `--stream`) streams a parquet log larger
than memory instead of reading it whole:

    torchrun --nproc_per_node 2 -m icg_rec.cli ranker fit --train train.parquet \
        --sparse user_id item_id --embeddings text_emb --out ckpt/ [--stream]
"""

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from icg_rec.device import DeviceError, resolve_device
from icg_rec.doctor import missing_torchrec_message
from icg_rec.errors import SchemaError
from icg_rec.features.provider import EncodedFrame, FeatureProvider, batch_rows
from icg_rec.features.store import CoverEmbeddingStore
from icg_rec.features.stream import ParquetBatches, Source, parquet_chunks
from icg_rec.io import (
    config_from_dict,
    load_state_into,
    load_toml_config,
    load_weights,
    read_json,
    save_weights,
    verify_folder,
    write_folder,
    write_json,
)
from icg_rec.metrics import auc
from icg_rec.ranking.base import FeatureSpec
from icg_rec.ranking.dlrm import SHARDINGS, TorchRecConfig, build_dlrm
from icg_rec.ranking.dmp import full_state_dict, gather_pieces, rank_and_world, shard_tables
from icg_rec.validation import check_fitted

try:
    from torchrec.datasets.utils import Batch
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
    from torchrec.optim.optimizers import in_backward_optimizer_filter
    from torchrec.optim.rowwise_adagrad import RowWiseAdagrad
except (ImportError, OSError) as error:  # a missing or mixed FBGEMM build
    raise ImportError(missing_torchrec_message(error)) from error

logger = logging.getLogger(__name__)


class TorchRecRanker:
    """p(click) from ids (embedding tables), dense floats, vectors and, optionally, cover embeddings.

    Args:
        config: architecture and training settings (defaults: TorchRecConfig()).
        cover_store: cover vectors by (item, cohort); required when config.cover_features is on.
        user_cohorts: frame (user_id, cohort_id) choosing each user's cover; None = default covers.
        device: "cpu" or "cuda" (see `icg_rec.device`): where `fit` trains and `predict` scores; under
            torchrun "cuda" means cuda:LOCAL_RANK of each process.
    """

    def __init__(
        self,
        config: TorchRecConfig | None = None,
        cover_store: CoverEmbeddingStore | None = None,
        user_cohorts: pl.DataFrame | None = None,
        device: str = "cpu",
    ) -> None:
        self.config = config
        self.cover_store = cover_store
        self.user_cohorts = user_cohorts
        self.device = device

    def fit(
        self, train: pl.DataFrame, spec: FeatureSpec, valid: pl.DataFrame | None = None, seed: int = 0
    ) -> "TorchRecRanker":
        """Trains, early-stopping on validation AUC when `valid` is given.

        Args:
            train: frame holding every column of `spec` (plus item_id/user_id with cover features).
            spec: id, dense, embedding and label columns.
            valid: optional frame with the same columns; needs both labels for AUC.
            seed: seeds the initial weights and the batch order; same seed, same model.

        Returns:
            self, with `model_`, `provider_`, `history_`, `best_epoch_`, `fit_counts_` and `device_` set.
        """
        config = self._provider(spec)
        self.provider_.fit(train)
        encoded = self.provider_.encode(train)
        self.fit_counts_ = _counts(encoded)
        rank, world = rank_and_world()

        def epoch_batches(epoch: int) -> Iterator[tuple[Batch, int]]:
            for rows in batch_rows(
                len(encoded), config.batch_size, shuffle=True, seed=seed * 100_003 + epoch
            ):
                yield self.provider_.batch(encoded, torch.tensor_split(rows, world)[rank]), len(rows)

        return self._fit(config, epoch_batches, valid, seed)

    def fit_parquet(
        self,
        train: Source,
        spec: FeatureSpec,
        valid: pl.DataFrame | None = None,
        seed: int = 0,
        read_rows: int = 65_536,
    ) -> "TorchRecRanker":
        """`fit` on a parquet log streamed with bounded memory (larger than memory is fine).

        The provider is fitted in one streaming pass, then every epoch streams the files again in file
        order (no shuffling: write the log shuffled); under torchrun each process encodes only its slice
        of every global batch.

        Args:
            train: a parquet file, a folder of parquet files, or a list of files.
            spec: id, dense, embedding and label columns.
            valid: optional in-memory frame for early stopping on AUC.
            seed: seeds the initial weights.
            read_rows: rows decoded from parquet at a time.

        Returns:
            self, fitted; `fit_counts_` counts the rows of the first epoch (of every process).
        """
        config = self._provider(spec)
        self.provider_.fit_chunks(parquet_chunks(train, self.provider_.columns(), read_rows))
        stream = ParquetBatches(train, self.provider_, config.batch_size, read_rows)

        def epoch_batches(epoch: int) -> Iterator[tuple[Batch, int]]:
            yield from stream
            if epoch == 0:
                self.fit_counts_ = _summed_counts(stream.counts())

        return self._fit(config, epoch_batches, valid, seed)

    def _provider(self, spec: FeatureSpec) -> TorchRecConfig:
        """Checks the cover settings and sets an unfitted `provider_`; returns the config in use."""
        config = self.config or TorchRecConfig()
        self.device_ = _process_device(self.device)
        if config.sharding not in SHARDINGS:
            raise ValueError(f"sharding must be one of {SHARDINGS}, got {config.sharding!r}")
        if config.sharding == "row_wise" and self.device_.type != "cuda":
            raise DeviceError(
                "sharding='row_wise' needs device='cuda' (torchrec's row-wise kernels run on CUDA/nccl "
                "only); use sharding='table_wise' on CPU"
            )
        if config.cover_features and self.cover_store is None:
            raise ValueError("config.cover_features is on but no cover_store was given")
        if not config.cover_features and (self.cover_store is not None or self.user_cohorts is not None):
            raise ValueError("a cover_store/user_cohorts was given but config.cover_features is off")
        self.provider_ = FeatureProvider(
            spec.sparse, spec.dense, spec.embeddings, spec.label, self.cover_store, self.user_cohorts
        )
        return config

    def _fit(
        self,
        config: TorchRecConfig,
        epoch_batches: Callable[[int], Iterator[tuple[Batch, int]]],
        valid: pl.DataFrame | None,
        seed: int,
    ) -> "TorchRecRanker":
        valid_encoded = None
        if valid is not None:
            valid_encoded = self.provider_.encode(valid)
            if len(np.unique(valid_encoded.labels.numpy())) < 2:
                raise SchemaError(
                    f"valid column {self.provider_.label!r} must hold both 0 and 1 for AUC early stopping"
                )
        state, self.history_, self.best_epoch_ = self._train(config, epoch_batches, valid_encoded, seed)
        self.model_ = self._new_model(config, seed)
        self.model_.load_state_dict(state)
        self.model_.to(self.device_).eval()
        return self

    def _new_model(self, config: TorchRecConfig, seed: int) -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build_dlrm(
                config, self.provider_.table_sizes(), self.provider_.dense_width, self.provider_.lists_
            )

    def _train(
        self,
        config: TorchRecConfig,
        epoch_batches: Callable[[int], Iterator[tuple[Batch, int]]],
        valid: EncodedFrame | None,
        seed: int,
    ) -> tuple[dict[str, torch.Tensor], list[dict], int]:
        """Runs the epochs over (this process's batch, global batch rows); returns (state of the best
        epoch, per-epoch history, best epoch)."""
        rank, world = rank_and_world()
        device = self.device_
        model = self._new_model(config, seed)
        if world == 1:
            model.to(device)  # DMP places the shards and the dense layers itself
        apply_optimizer_in_backward(RowWiseAdagrad, model.sparse_arch.parameters(), {"lr": config.sparse_lr})
        if world > 1:
            model = shard_tables(model, device, config.sharding)
        dense_params = [p for _, p in in_backward_optimizer_filter(model.named_parameters())]
        optimizer = torch.optim.Adam(dense_params, lr=config.dense_lr)
        history, best_auc, best_epoch, best_state = [], -np.inf, -1, None
        for epoch in range(config.epochs):
            model.train()
            loss_sum = torch.zeros(2, dtype=torch.float64)  # (sum of row losses, rows) on this process
            batches = epoch_batches(epoch)
            for batch, rows in tqdm(batches, desc=f"epoch {epoch}", disable=not config.progress or rank != 0):
                batch = batch.to(device)
                logits = model(batch.dense_features, batch.sparse_features).squeeze(-1)  # (b,)
                row_loss = F.binary_cross_entropy_with_logits(logits, batch.labels, reduction="sum")
                optimizer.zero_grad()
                (row_loss * world / rows).backward()  # = global-batch mean after DMP/DDP averaging
                optimizer.step()
                loss_sum += torch.tensor([row_loss.item(), len(batch.labels)], dtype=torch.float64)
            if world > 1:
                loss_sum = loss_sum.to(device)  # nccl reduces CUDA tensors only
                dist.all_reduce(loss_sum)
                loss_sum = loss_sum.cpu()
            record = {"epoch": epoch, "train_logloss": float(loss_sum[0] / loss_sum[1])}
            if valid is not None:
                record["valid_auc"] = auc(valid.labels.numpy(), self._scores(model, valid, config))
            history.append(record)
            logger.info("epoch %s", record)
            score = record.get("valid_auc", epoch)  # without valid data the last epoch is kept
            if score > best_auc:
                best_auc, best_epoch = score, epoch
                best_state = full_state_dict(model, device) if world > 1 else _copy_state(model)
            elif epoch - best_epoch >= config.patience:
                break
        return best_state, history, best_epoch

    def _scores(self, model: nn.Module, encoded: EncodedFrame, config: TorchRecConfig) -> np.ndarray:
        """p(click) of every row of `encoded`, each global batch split across processes."""
        rank, world = rank_and_world()
        model.eval()
        pieces = []
        with torch.no_grad():
            for rows in batch_rows(len(encoded), 4 * config.batch_size, shuffle=False, seed=0):
                batch = self.provider_.batch(encoded, torch.tensor_split(rows, world)[rank]).to(self.device_)
                logits = model(batch.dense_features, batch.sparse_features).squeeze(-1)  # (b,)
                pieces.append(torch.sigmoid(logits).double().cpu().numpy())
        return gather_pieces(pieces) if world > 1 else np.concatenate(pieces)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """p(click) as float64 (n_rows,); unknown ids use their table's row 0 (counts are logged)."""
        check_fitted(self, "model_")
        encoded = self.provider_.encode(frame)
        logger.info("predict counts %s", _counts(encoded))
        config = self.config or TorchRecConfig()
        pieces = []
        with torch.no_grad():
            for batch in self.provider_.batches(encoded, 4 * config.batch_size):
                batch = batch.to(self.device_)
                logits = self.model_(batch.dense_features, batch.sparse_features).squeeze(-1)  # (b,)
                pieces.append(torch.sigmoid(logits).double().cpu().numpy())
        return np.concatenate(pieces) if pieces else np.zeros(0)

    def save(self, folder: str | Path) -> Path:
        """Writes model.safetensors, ranker.json (config, history) and provider/ (vocabularies, store), as a set."""
        folder = Path(folder)
        write_folder(folder, self._write)
        return folder

    def _write(self, folder: Path) -> None:
        save_weights(folder / "model.safetensors", {k: v.cpu() for k, v in self.model_.state_dict().items()})
        self.provider_.save(folder / "provider")
        meta = {
            "config": asdict(self.config or TorchRecConfig()),
            "history": self.history_,
            "best_epoch": self.best_epoch_,
            "fit_counts": self.fit_counts_,
        }
        write_json(folder / "ranker.json", meta)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "TorchRecRanker":
        """Reads a ranker written by `save` onto `device`; raises CheckpointError if a file changed or the
        weights do not fit the config."""
        folder = Path(folder)
        verify_folder(folder, required=["ranker.json", "model.safetensors", "provider/provider.json"])
        target = _process_device(device)
        meta = read_json(folder / "ranker.json")
        config = config_from_dict(TorchRecConfig, meta["config"], source=str(folder / "ranker.json"))
        provider = FeatureProvider.load(folder / "provider")
        ranker = cls(config, provider.cover_store, provider.user_cohorts, device)
        ranker.provider_, ranker.history_, ranker.best_epoch_ = provider, meta["history"], meta["best_epoch"]
        ranker.fit_counts_ = meta["fit_counts"]
        ranker.model_ = build_dlrm(config, provider.table_sizes(), provider.dense_width, provider.lists_)
        weights = folder / "model.safetensors"
        load_state_into(ranker.model_, load_weights(weights), f"{weights} (config {folder / 'ranker.json'})")
        ranker.model_.to(target).eval()
        ranker.device_ = target
        return ranker


def _process_device(device: str) -> torch.device:
    """This process's device: under torchrun, "cuda" is cuda:LOCAL_RANK (made current for nccl)."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and "LOCAL_RANK" in os.environ and torch.device(device).index is None:
        resolved = resolve_device(f"cuda:{int(os.environ['LOCAL_RANK'])}")
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    return resolved


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _counts(encoded: EncodedFrame) -> dict:
    return {
        "rows": len(encoded),
        "unknown_ids": encoded.n_unknown,
        "cover_exact": encoded.n_cover_exact,
        "cover_fallback": encoded.n_cover_fallback,
        "cover_missing": encoded.n_cover_missing,
        "default_cohort": encoded.n_default_cohort,
    }


def _summed_counts(counts: dict) -> dict:
    """Encoding counts summed over the processes of the group (as they are, without one)."""
    if rank_and_world()[1] == 1:
        return counts
    columns = sorted(counts["unknown_ids"])
    scalars = [k for k in counts if k != "unknown_ids"]
    total = torch.tensor([counts[k] for k in scalars] + [counts["unknown_ids"][c] for c in columns])
    dist.all_reduce(total)
    summed = dict(zip(scalars, total[: len(scalars)].tolist(), strict=True))
    return summed | {"unknown_ids": dict(zip(columns, total[len(scalars) :].tolist(), strict=True))}


def fit_from_files(
    train: Path,
    out: Path,
    spec: FeatureSpec,
    valid: Path | None = None,
    config: Path | None = None,
    cover_store: Path | None = None,
    user_cohorts: Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    stream: bool = False,
) -> TorchRecRanker:
    """Fits from parquet files and saves (rank 0); under `torchrun`, with DMP in a process group that is
    nccl for device "cuda" and gloo for "cpu".

    Args:
        train: parquet frame with the spec's columns.
        out: checkpoint folder, written by rank 0.
        spec: id, dense, embedding and label columns.
        valid: optional parquet frame for early stopping on AUC.
        config: optional TOML file with TorchRecConfig fields.
        cover_store: optional folder of a saved CoverEmbeddingStore (switch config.cover_features on).
        user_cohorts: optional parquet frame (user_id, cohort_id).
        seed: initial weights and batch order.
        device: "cpu" or "cuda" (each process on cuda:LOCAL_RANK).
        stream: stream `train` in bounded memory (file order, no shuffling) instead of reading it whole.

    Returns:
        The fitted ranker (the same on every process).
    """
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("nccl" if _process_device(device).type == "cuda" else "gloo")
    try:
        settings = load_toml_config(TorchRecConfig, config) if config else TorchRecConfig()
        store = CoverEmbeddingStore.load(cover_store) if cover_store else None
        cohorts = pl.read_parquet(user_cohorts) if user_cohorts else None
        valid_frame = pl.read_parquet(valid) if valid else None
        ranker = TorchRecRanker(settings, store, cohorts, device)
        if stream:
            ranker.fit_parquet(train, spec, valid_frame, seed)
        else:
            ranker.fit(pl.read_parquet(train), spec, valid_frame, seed)
        if rank_and_world()[0] == 0:
            ranker.save(out)
            print(f"saved {out} (best epoch {ranker.best_epoch_}, history {ranker.history_})")
    finally:
        if distributed:
            dist.destroy_process_group()
    return ranker
