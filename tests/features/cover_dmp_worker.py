"""Run by test_cover_features.py under `torchrun --nproc_per_node 2`: a torchrec DLRM with CoverFeatures,
the cover table sharded by DMP (table-wise or column-wise, built on the meta device and loaded after
sharding), against the same model unsharded in one process. Rank 0 writes the largest differences as JSON.

    torchrun --nproc_per_node 2 tests/features/cover_dmp_worker.py SHARDING OUT.json
"""

import json
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
from torchrec.models.dlrm import DLRM
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from icg_rec.features.cover_features import CoverFeatures, CoverFeaturesConfig, WithCovers
from icg_rec.ranking.dmp import full_state_dict, shard_tables

N_USERS, N_ITEMS, N_COHORTS, DIM, BATCH = 12, 20, 3, 8, 24
CONFIG = CoverFeaturesConfig(item_keys=["item_id", "history"])
COVER_WEIGHT = "covers.tables.embedding_bags.covers.weight"


def cover_keys() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every item's default cover, and a cover for half of the (item, cohort) pairs; 2 items without any."""
    rng = np.random.default_rng(0)
    items, cohorts = [], []
    for item in range(N_ITEMS - 2):
        items.append(item)
        cohorts.append(-1)
        for cohort in range(N_COHORTS):
            if rng.random() < 0.5:
                items.append(item)
                cohorts.append(cohort)
    vectors = rng.normal(size=(len(items), DIM)).astype(np.float32)
    return np.array(items), np.array(cohorts), vectors


def batch(step: int) -> tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]:
    """A global batch: dense (B, 1), KJT (user_id, item_id, history (0-3 items), cohort_id), labels (B,)."""
    gen = torch.Generator().manual_seed(step)
    users = torch.randint(N_USERS, (BATCH,), generator=gen)
    items = torch.randint(N_ITEMS, (BATCH,), generator=gen)
    history_len = torch.randint(4, (BATCH,), generator=gen)
    history = torch.randint(N_ITEMS, (int(history_len.sum()),), generator=gen)
    cohorts = torch.randint(-1, N_COHORTS + 1, (BATCH,), generator=gen)  # N_COHORTS: a cohort with no covers
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=["user_id", "item_id", "history", "cohort_id"],
        values=torch.cat([users, items, history, cohorts]),
        lengths=torch.cat([torch.ones(BATCH, dtype=torch.long), torch.ones(BATCH, dtype=torch.long), history_len,
                           torch.ones(BATCH, dtype=torch.long)]),
    )  # fmt: skip
    return torch.randn(BATCH, 1, generator=gen), kjt, torch.randint(2, (BATCH,), generator=gen).float()


def build(device: torch.device) -> WithCovers:
    """The DLRM (user and item tables) with CoverFeatures; same seed, same initial weights."""
    torch.manual_seed(0)
    tables = [
        EmbeddingBagConfig(name=f"t_{k}", embedding_dim=8, num_embeddings=n, feature_names=[k])
        for k, n in (("user_id", N_USERS), ("item_id", N_ITEMS))
    ]
    items, cohorts, _ = cover_keys()
    covers = CoverFeatures(items, cohorts, DIM, CONFIG, device=device)
    model = WithCovers(
        DLRM(EmbeddingBagCollection(tables=tables), 1 + covers.output_dim, [16, 8], [16, 1]), covers
    )
    apply_optimizer_in_backward(RowWiseAdagrad, model.model.sparse_arch.parameters(), {"lr": 0.1})
    return model


def rank_rows(world: int, rank: int) -> torch.Tensor:
    return torch.tensor_split(torch.arange(BATCH), world)[rank]


def take(dense, kjt, labels, rows):
    """Rows `rows` of a global batch (dense, KJT, labels)."""
    per_key = kjt.to_dict()
    values, lengths = [], []
    for key in kjt.keys():
        jt = per_key[key]
        lengths.append(jt.lengths()[rows])
        values.extend(jt.values()[jt.offsets()[r] : jt.offsets()[r + 1]] for r in rows.tolist())
    sub = KeyedJaggedTensor.from_lengths_sync(
        keys=kjt.keys(), values=torch.cat(values), lengths=torch.cat(lengths)
    )
    return dense[rows], sub, labels[rows]


def train_steps(model, steps: int, world: int, rank: int) -> list[float]:
    dense_params = [p for _, p in in_backward_optimizer_filter(model.named_parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(dense_params, lr=1e-2)
    losses = []
    for step in range(steps):
        dense, kjt, labels = take(*batch(step), rank_rows(world, rank))
        loss = F.binary_cross_entropy_with_logits(model(dense, kjt).squeeze(-1), labels, reduction="sum")
        optimizer.zero_grad()
        (loss * world / BATCH).backward()
        optimizer.step()
        total = loss.detach().clone()
        if world > 1:
            dist.all_reduce(total)
        losses.append(float(total) / BATCH)
    return losses


def covers_out(model, world: int, rank: int) -> tuple[torch.Tensor, dict[str, int]]:
    """The cover features of one global batch, gathered in row order, and the summed lookup counts."""
    covers = model.covers if world == 1 else model.module.covers
    covers.reset_counts()
    with torch.no_grad():
        out = covers(take(*batch(100), rank_rows(world, rank))[1]).values()  # (b, output_dim)
    counts = covers.lookup_counts.clone()
    if world > 1:
        pieces = [None] * world
        dist.all_gather_object(pieces, out)
        out = torch.cat(pieces)
        dist.all_reduce(counts)
    return out, dict(zip(("exact", "fallback", "missing"), counts.tolist(), strict=True))


def main(sharding: str, out_path: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    items, cohorts, vectors = cover_keys()

    single = build(torch.device("cpu"))
    single.covers.load(items, cohorts, vectors)
    sharded = shard_tables(build(torch.device("meta")), torch.device("cpu"), per_table={"covers": sharding})
    written = sharded.module.covers.load(items, cohorts, vectors)
    weight = sharded.state_dict()[COVER_WEIGHT]
    report = {
        "written": written,
        "shards": [
            (m.shard_offsets, m.shard_sizes, str(m.placement)) for m in weight.metadata().shards_metadata
        ],
    }

    a, counts_a = covers_out(single, 1, 0)
    b, counts_b = covers_out(sharded, world, rank)
    report |= {"forward": float((a - b).abs().max()), "counts": [counts_a, counts_b]}

    fresh = np.full((3, DIM), 7.0, dtype=np.float32)  # a refresh rewrites three covers in place
    for model in (single, sharded.module):
        model.covers.load(items[:3], cohorts[:3], fresh)
    a, _ = covers_out(single, 1, 0)
    b, _ = covers_out(sharded, world, rank)
    report["after_load"] = float((a - b).abs().max())

    loss_a = train_steps(single, 4, 1, 0)
    loss_b = train_steps(sharded, 4, world, rank)
    state = full_state_dict(sharded, torch.device("cpu"))
    expected = torch.from_numpy(vectors)
    expected[:3] = 7.0
    report |= {
        "loss_single": loss_a,
        "loss_sharded": loss_b,
        "cover_table_moved_single": float((single.state_dict()[COVER_WEIGHT] - expected).abs().max()),
        "cover_table_moved_sharded": float((state[COVER_WEIGHT] - expected).abs().max()),
        "predict": float(
            (single(*batch(200)[:2]) - _gathered_logits(sharded, world, rank)).abs().max().detach()
        ),
    }
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(report, f)
    dist.barrier()  # no rank tears gloo down while a peer still works: a vanished peer aborts it
    dist.destroy_process_group()


def _gathered_logits(model, world: int, rank: int) -> torch.Tensor:
    dense, kjt, labels = take(*batch(200), rank_rows(world, rank))
    with torch.no_grad():
        logits = model(dense, kjt)  # (b, 1)
    pieces = [None] * world
    dist.all_gather_object(pieces, logits)
    return torch.cat(pieces)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
