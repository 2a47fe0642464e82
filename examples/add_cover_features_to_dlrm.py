"""Add cover features to torchrec's own DLRM, train it under DMP, and compare test AUC with and without.

    torchrun --nproc_per_node 2 examples/add_cover_features_to_dlrm.py

Everything here is a plain torchrec training script (DLRM from torchrec.models.dlrm, an
EmbeddingBagCollection, a KeyedJaggedTensor per batch, DistributedModelParallel on gloo); the lines
marked `# + covers` are all that adding the covers takes. DMP shards the cover table like any other
table (here table-wise; column-wise works the same on CPU, row-wise needs CUDA).

The data: a SimWorld whose users were shown the cover refreshed for their cohort, where the pair had
one (half of the (item, cohort) pairs; the rest show the item's reference cover, counted as fallbacks),
with clicks drawn from the world's oracle on the cover shown (icg_rec.data.sim.cohort_covers). The
cover vectors are a colour-grid image embedding of each cover; use your image encoder's. The delta's
95% CI is a paired bootstrap over test users; rerun with other --seed values for the training noise.
"""

import argparse
import logging

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.models.dlrm import DLRM
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from icg_rec.data.sim import SimConfig
from icg_rec.data.sim.cohort_covers import cohort_cover_world
from icg_rec.data.splits import per_user_temporal_split
from icg_rec.encoders.small import ColourGridEncoder
from icg_rec.features.cover_features import CoverFeatures, WithCovers  # + covers
from icg_rec.metrics import auc
from icg_rec.metrics.stats import paired_bootstrap


def kjt(frame: pl.DataFrame) -> KeyedJaggedTensor:
    """One id per row for each key; DLRM reads the keys it has tables for and ignores the rest."""
    keys = ["user_id", "item_id", "cohort_id"]  # + covers: the row user's cohort
    values = torch.cat([torch.tensor(frame[k].to_numpy()) for k in keys])
    return KeyedJaggedTensor.from_lengths_sync(
        keys=keys, values=values, lengths=torch.ones(len(values), dtype=torch.int32)
    )


def build(n_users: int, n_items: int, covers: CoverFeatures | None) -> DistributedModelParallel:
    """torchrec's DLRM over user and item tables, every table sharded table-wise by DMP."""
    torch.manual_seed(0)
    tables = [
        EmbeddingBagConfig(name=f"t_{key}", embedding_dim=16, num_embeddings=n, feature_names=[key])
        for key, n in (("user_id", n_users), ("item_id", n_items))
    ]
    dense_in = 1 + (covers.output_dim if covers else 0)  # + covers: the cover vector joins the dense input
    model = DLRM(EmbeddingBagCollection(tables=tables), dense_in, [64, 16], [64, 32, 1])
    apply_optimizer_in_backward(RowWiseAdagrad, model.sparse_arch.parameters(), {"lr": 0.05})
    model = WithCovers(model, covers) if covers else model  # + covers
    every_table = [
        t.name
        for m in model.modules()
        if isinstance(m, EmbeddingBagCollection)
        for t in m.embedding_bag_configs()
    ]
    constraints = {name: ParameterConstraints(sharding_types=["table_wise"]) for name in every_table}
    sharders = [EmbeddingBagCollectionSharder()]
    planner = EmbeddingShardingPlanner(
        Topology(world_size=dist.get_world_size(), compute_device="cpu"), constraints=constraints
    )
    plan = planner.collective_plan(model, sharders)
    return DistributedModelParallel(model, device=torch.device("cpu"), plan=plan, sharders=sharders)


def train_and_score(model, train: pl.DataFrame, test: pl.DataFrame, args: argparse.Namespace) -> np.ndarray:
    """Trains on every global batch (this process takes its slice), returns p(click) of all test rows."""
    rank, world = dist.get_rank(), dist.get_world_size()
    optimizer = torch.optim.Adam(
        [p for _, p in in_backward_optimizer_filter(model.named_parameters())], lr=1e-3
    )
    for epoch in range(args.epochs):
        order = np.random.default_rng(args.seed * 1000 + epoch).permutation(train.height)
        for start in range(0, train.height, args.batch_size):
            rows = np.array_split(order[start : start + args.batch_size], world)[rank]
            part = train[rows]
            logits = model(torch.ones(len(rows), 1), kjt(part)).squeeze(-1)  # (b,)
            labels = torch.from_numpy(part["label"].to_numpy()).float()
            loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
            optimizer.zero_grad()
            (loss * world / min(args.batch_size, train.height - start)).backward()  # global-batch mean
            optimizer.step()
    rows = np.array_split(np.arange(test.height), world)[rank]
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.ones(len(rows), 1), kjt(test[rows])).squeeze(-1)).numpy()
    pieces = [None] * world
    dist.all_gather_object(pieces, scores)
    return np.concatenate(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--impressions", type=int, default=40, help="impressions per user")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512, help="global batch")
    parser.add_argument("--seed", type=int, default=0, help="world and training seed")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    logging.getLogger("torchrec.distributed.planner").setLevel(logging.ERROR)  # CPU topology notices

    sim = cohort_cover_world(
        SimConfig(
            n_users=args.users, n_items=args.items, impressions_per_user=args.impressions, seed=args.seed
        )
    )
    train, test = per_user_temporal_split(sim.interactions, test_fraction=0.2)
    pixels = sim.covers  # (n_covers, 3, S, S): the covers of keys (sim.item_ids, sim.cohort_ids)
    vectors = ColourGridEncoder(grid=4, image_size=pixels.shape[-1])(pixels)  # + covers: your image encoder
    vectors = (vectors - vectors.mean(dim=0)) / vectors.std(dim=0)  # + covers: (n_covers, 51)
    keys = sim.item_ids, sim.cohort_ids  # + covers: the (item, cohort) of each cover
    covers = CoverFeatures(*keys, vectors.shape[1], device=torch.device("meta"))  # + covers: DMP allocates

    scores = {}
    for name, arm_covers in (("without covers", None), ("with covers", covers)):
        model = build(args.users, args.items, arm_covers)
        if arm_covers is not None:
            model.module.covers.load(*keys, vectors)  # + covers: each process fills its own shard
        scores[name] = train_and_score(model, train, test, args)

    counts = torch.tensor(list(model.module.covers.counts().values()))
    dist.all_reduce(counts)  # cover lookups on every process: train and test rows, all epochs
    if dist.get_rank() == 0:
        labels, users = test["label"].to_numpy(), test["user_id"].to_numpy()
        a, b = scores["without covers"], scores["with covers"]
        delta = paired_bootstrap(labels, a, b, users, "auc", n_boot=1000, seed=args.seed)
        print(
            f"{train.height} train / {test.height} test rows, {len(sim.item_ids)} covers, {args.epochs} epochs"
        )
        print(
            f"cover lookups: exact {counts[0]}, fallback to the item's reference cover {counts[1]}, missing {counts[2]}"
        )
        print(f"test AUC without covers {auc(labels, a):.4f}, with covers {auc(labels, b):.4f}")
        print(f"auc_delta={delta.delta:+.4f} ci95=[{delta.ci95[0]:+.4f}, {delta.ci95[1]:+.4f}]")
    dist.barrier()  # no rank tears gloo down while a peer still works: a vanished peer aborts it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
