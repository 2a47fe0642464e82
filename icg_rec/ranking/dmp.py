"""DistributedModelParallel helpers: table-, row- or column-wise sharding that keeps the single-process
initial weights, full state dicts gathered from shards, and scores gathered across processes."""

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor

from icg_rec.doctor import missing_torchrec_message

try:
    from torchrec.distributed import DistributedModelParallel
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.distributed.types import ShardingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection
except (ImportError, OSError) as error:  # a missing or mixed FBGEMM build
    raise ImportError(missing_torchrec_message(error)) from error

from icg_rec.device import DeviceError


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) when none is initialized."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_tables(
    model: nn.Module,
    device: torch.device,
    sharding: str = "table_wise",
    per_table: dict[str, str] | None = None,
) -> DistributedModelParallel:
    """Wraps `model` in DMP: every embedding table on one process ("table_wise"), or each table's rows
    split across the processes ("row_wise": CUDA/nccl only, torchrec's row-wise kernels need it), or
    its columns ("column_wise", one slice per process; per_table only).

    DMP allocates fresh shard weights; they are overwritten with `model`'s tables so that training
    starts from the same weights as single-process training. Tables on the meta device (e.g. a large
    CoverFeatures table, loaded after sharding) keep DMP's fresh weights.

    Args:
        model: a model holding EmbeddingBagCollection(s), with optimizers already fused in backward.
        device: this process's device (CPU with gloo, cuda:local_rank with nccl).
        sharding: "table_wise" or "row_wise", for every table not in `per_table`.
        per_table: table name -> "table_wise", "column_wise" or "row_wise" for tables sharded otherwise.

    Returns:
        The sharded model (dense layers data-parallel).
    """
    kinds = {"table_wise": ShardingType.TABLE_WISE.value, "row_wise": ShardingType.ROW_WISE.value}
    if sharding not in kinds:
        raise ValueError(f"sharding must be one of {sorted(kinds)}, got {sharding!r}")
    widths = {
        t.name: t.embedding_dim
        for m in model.modules()
        if isinstance(m, EmbeddingBagCollection)
        for t in m.embedding_bag_configs()
    }
    chosen = dict.fromkeys(widths, sharding) | (per_table or {})
    if unknown := sorted(set(chosen) - set(widths)):
        raise ValueError(
            f"per_table names table(s) {unknown} that the model does not hold; it holds {sorted(widths)}"
        )
    kinds["column_wise"] = ShardingType.COLUMN_WISE.value
    if bad := sorted(set(chosen.values()) - set(kinds)):
        raise ValueError(f"per_table sharding must be one of {sorted(kinds)}, got {bad}")
    if "row_wise" in chosen.values() and device.type != "cuda":
        raise DeviceError(
            "row_wise sharding needs device='cuda' (torchrec's row-wise embedding kernels and the "
            "reduce-scatter they use run on CUDA/nccl only); use table_wise or column_wise on CPU"
        )
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    world = dist.get_world_size()
    constraints = {
        # column-wise: one slice of columns per process (multiples of 4, as FBGEMM needs)
        t: ParameterConstraints(sharding_types=[kinds[kind]], min_partition=-(-widths[t] // (4 * world)) * 4)
        if kind == "column_wise"
        else ParameterConstraints(sharding_types=[kinds[kind]])
        for t, kind in chosen.items()
    }
    topology = Topology(world_size=world, compute_device=device.type)
    sharders = [EmbeddingBagCollectionSharder()]
    plan = EmbeddingShardingPlanner(topology=topology, constraints=constraints).collective_plan(
        model, sharders
    )
    sharded = DistributedModelParallel(module=model, device=device, plan=plan, sharders=sharders)
    with torch.no_grad():
        for name, value in sharded.state_dict().items():
            if isinstance(value, ShardedTensor) and not initial[name].is_meta:
                for shard in value.local_shards():
                    (r0, c0), (nr, nc) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                    shard.tensor.copy_(initial[name][r0 : r0 + nr, c0 : c0 + nc])
    return sharded


def full_state_dict(model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """A CPU copy of the whole state on every process; sharded tables are gathered (collective) through
    `device`, this process's device (nccl moves CUDA tensors only)."""
    state = {}
    for name, value in model.state_dict().items():
        if isinstance(value, ShardedTensor):
            dtype = value.metadata().tensor_properties.dtype
            full = torch.empty(value.size(), dtype=dtype, device=device) if dist.get_rank() == 0 else None
            value.gather(dst=0, out=full)
            full = full if full is not None else torch.empty(value.size(), dtype=dtype, device=device)
            dist.broadcast(full, src=0)
            state[name] = full.cpu()
        else:
            state[name] = value.detach().cpu().clone()
    return state


def gather_pieces(pieces: list[np.ndarray]) -> np.ndarray:
    """Concatenates every process's per-batch pieces in global row order: batch-major, then rank."""
    everyone: list[list[np.ndarray] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, pieces)
    return np.concatenate([rank_pieces[b] for b in range(len(pieces)) for rank_pieces in everyone])
