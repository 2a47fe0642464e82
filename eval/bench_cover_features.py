"""CoverFeatures at catalogue scale: DLRM step time with vs without covers (1 process, 2 DMP processes),
memory, the old polars-join lookup vs the module, and streaming peak memory at 1x and 10x rows.

    nice -n 10 python -m eval.bench_cover_features [--items 1000000 --cohorts 16 --dim 64 --dtype fp16]

The cover table holds every item's default cover and one cover per (item, cohort): items x (cohorts + 1)
rows of `dim` values in `dtype` (1,000,000 x 17 x 64 fp16 = 2.0 GiB; fp32 would be 4.1 GiB). The model
is torchrec's DLRM (64-d user and item tables, the item table also mean-pooling a jagged history of up
to 20 items; dense MLP 256-64, over MLP 256-128-1; 8 dense inputs); with covers, `WithCovers` appends
the row item's cover (under the user's cohort; cohorts 16-17 have no covers: fallback) to the dense
input. Training steps: forward, backward, row-wise Adagrad fused into backward on the id tables, Adam on
the MLPs; the cover table is frozen. Both models run under DistributedModelParallel, in 1 process and
in 2 processes (`torchrun`, gloo, one thread each; id tables table-wise, the cover table column-wise,
built on the meta device and loaded into each process's shard after sharding): DMP's fused kernels
update only the rows a batch touches, where an unsharded EmbeddingBagCollection would write a dense
gradient of the whole 1M-row item table every step. The same global batches; the plain and cover
models take turns step by step, and the cover overhead is the median over steps of (cover step /
neighbouring plain step) - 1, so that the load of a shared, busy box cancels; ex/s come from the median
step times. A third model, the plain DLRM with `dim` zero columns appended to its dense input, takes
its turn too: how much of the overhead is the wider dense MLP rather than the cover lookup. Lookup: `CoverEmbeddingStore.lookup` (the polars join the FeatureProvider uses) and
`CoverFeatures.forward` on the same batch of keys, reading the same vectors (fastest of --rounds).
Streaming: peak resident memory of a process that fits a FeatureProvider on a parquet log and streams
one pass of batches (ParquetBatches), at 1x and 10x rows, beside reading the log whole. Last line:
`cover_overhead=X dmp2_speedup=Y peak_mb=Z` (X: 1 process, in CPU time per step, which other jobs on
a shared box do not inflate; the wall-clock overhead is printed beside it; Y: 1-process over 2-process
median wall-clock step time with covers; Z: the largest peak of any one process, the benchmark's own
included).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType
from torchrec.models.dlrm import DLRM
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from icg_rec.features.cover_features import CoverFeatures, CoverFeaturesConfig, WithCovers
from icg_rec.features.store import CoverEmbeddingStore

N_DENSE, EMBEDDING_DIM, HISTORY = 8, 64, 20
LOAD_CHUNK = 1 << 18  # cover rows written per load call (bounds the transient float32 copy)


def cover_keys(n_items: int, n_cohorts: int) -> tuple[np.ndarray, np.ndarray]:
    """Item-major keys: for every item its default cover, then one per cohort 0..n_cohorts-1."""
    items = np.repeat(np.arange(n_items, dtype=np.int64), n_cohorts + 1)
    cohorts = np.tile(np.arange(-1, n_cohorts, dtype=np.int64), n_items)
    return items, cohorts


def fill(covers: CoverFeatures, items: np.ndarray, cohorts: np.ndarray, seed: int) -> None:
    """Writes seeded uniform vectors into every row, LOAD_CHUNK rows at a time (each process: its shard)."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(items), LOAD_CHUNK):
        stop = min(start + LOAD_CHUNK, len(items))
        values = torch.rand(stop - start, covers.dim, generator=gen) - 0.5  # (chunk, dim)
        covers.load(items[start:stop], cohorts[start:stop], values)


def make_batches(
    args: argparse.Namespace, n: int
) -> list[tuple[torch.Tensor, KeyedJaggedTensor, torch.Tensor]]:
    """n global batches: dense (B, N_DENSE), KJT (user_id, item_id, history 0-20 items, cohort_id), labels."""
    gen = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(n):
        b = args.batch_size
        users = torch.randint(args.users, (b,), generator=gen)
        items = torch.randint(args.items, (b,), generator=gen)
        lengths = torch.randint(HISTORY + 1, (b,), generator=gen)
        history = torch.randint(args.items, (int(lengths.sum()),), generator=gen)
        cohorts = torch.randint(
            -1, args.cohorts + 2, (b,), generator=gen
        )  # -1 default, >= cohorts: no covers
        ones = torch.ones(b, dtype=torch.long)
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=["user_id", "item_id", "history", "cohort_id"],
            values=torch.cat([users, items, history, cohorts]),
            lengths=torch.cat([ones, ones, lengths, ones]),
        )
        batches.append(
            (torch.randn(b, N_DENSE, generator=gen), kjt, torch.randint(2, (b,), generator=gen).float())
        )
    return batches


class ZeroPadded(nn.Module):
    """A model whose dense input is widened by `extra` zero columns: the cost of a wider dense MLP alone."""

    def __init__(self, model: nn.Module, extra: int) -> None:
        super().__init__()
        self.model = model
        self.extra = extra

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        return self.model(F.pad(dense, (0, self.extra)), sparse)  # dense (B, n + extra)


def build_model(args: argparse.Namespace, covers: CoverFeatures | None, extra: int = 0) -> nn.Module:
    """torchrec's DLRM (user table; item table shared by item_id and the mean-pooled history), with covers
    or with `extra` zero dense inputs."""
    torch.manual_seed(args.seed)
    tables = [
        EmbeddingBagConfig(
            name="t_user", embedding_dim=EMBEDDING_DIM, num_embeddings=args.users, feature_names=["user_id"]
        ),
        EmbeddingBagConfig(
            name="t_item",
            embedding_dim=EMBEDDING_DIM,
            num_embeddings=args.items,
            feature_names=["item_id", "history"],
            pooling=PoolingType.MEAN,
        ),
    ]
    extra = covers.output_dim if covers is not None else extra
    model = DLRM(EmbeddingBagCollection(tables=tables), N_DENSE + extra, [256, EMBEDDING_DIM], [256, 128, 1])
    apply_optimizer_in_backward(RowWiseAdagrad, model.sparse_arch.parameters(), {"lr": 0.05})
    if covers is not None:
        return WithCovers(model, covers)
    return ZeroPadded(model, extra) if extra else model


def paired_step_times(
    models: dict[str, nn.Module], batches: list, steps: int, rank: int, world: int
) -> dict[str, list[float]]:
    """Wall and CPU seconds ("{name}_cpu") of each training step of each model, the models taking turns
    step by step (this process's slice of each global batch), after 2 warm-up steps each: neighbouring
    steps see the same load."""
    optimizers = {
        name: torch.optim.Adam(
            [p for _, p in in_backward_optimizer_filter(model.named_parameters()) if p.requires_grad], lr=1e-3
        )
        for name, model in models.items()
    }
    times = {name: [] for name in models} | {f"{name}_cpu": [] for name in models}
    for i in range(steps + 2):
        dense, kjt, labels = batches[i % len(batches)]
        if world > 1:
            dense, kjt, labels = _slice(dense, kjt, labels, rank, world)
        for name, model in models.items():
            if world > 1:
                dist.barrier()
            start, start_cpu = time.perf_counter(), time.process_time()
            logits = model(dense, kjt).squeeze(-1)  # (b,)
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()
            if i >= 2:
                times[name].append(time.perf_counter() - start)
                times[f"{name}_cpu"].append(time.process_time() - start_cpu)
    return times


def _slice(dense: torch.Tensor, kjt: KeyedJaggedTensor, labels: torch.Tensor, rank: int, world: int):
    """Rows tensor_split(batch, world)[rank] of a global batch."""
    rows = torch.tensor_split(torch.arange(len(labels)), world)[rank]
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    values, lengths = [], []
    for jagged in kjt.to_dict().values():
        offsets = jagged.offsets()
        values.append(jagged.values()[offsets[lo] : offsets[hi]])
        lengths.append(jagged.lengths()[lo:hi])
    sliced = KeyedJaggedTensor.from_lengths_sync(
        keys=kjt.keys(), values=torch.cat(values), lengths=torch.cat(lengths)
    )
    return dense[lo:hi], sliced, labels[lo:hi]


def store_lookup(args: argparse.Namespace, batch: KeyedJaggedTensor) -> dict:
    """The polars-join lookup of the FeatureProvider's CoverEmbeddingStore over every key, timed.

    Its vectors are each key's row number (as row // 4096, row % 4096: exact in float32), so that its
    answer names the row it chose (compared with the module's afterwards) without a second table copy.
    """
    items, cohorts = cover_keys(args.items, args.cohorts)
    store = CoverEmbeddingStore()  # the lookup needs the keys and vectors, not the faiss index
    keys = pl.DataFrame({"item_id": items, "cohort_id": cohorts}).with_row_index("row")
    store.keys_ = keys.with_columns(pl.col("row").cast(pl.Int64))
    rows = np.arange(len(items))
    store.vectors_ = np.stack([rows >> 12, rows & 4095], axis=1).astype(np.float64)  # (n, 2), float32-exact
    del items, cohorts, keys, rows
    query = batch.to_dict()
    query_items, query_cohorts = query["item_id"].values().numpy(), query["cohort_id"].values().numpy()
    seconds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        found = store.lookup(query_items, query_cohorts)
        seconds.append(time.perf_counter() - start)
    return {
        "seconds": min(seconds),
        "rows": (found.vectors[:, 0].astype(np.int64) << 12) + found.vectors[:, 1].astype(np.int64),
        "has_cover": found.has_cover,
        "counts": [found.n_exact, found.n_fallback, found.n_missing],
    }


def module_lookup(covers: CoverFeatures, args: argparse.Namespace, batch: KeyedJaggedTensor) -> dict:
    """CoverFeatures.forward on the same batch, timed; its vectors and counts."""
    seconds = []
    with torch.no_grad():
        for _ in range(args.rounds):
            covers.reset_counts()
            start = time.perf_counter()
            out = covers(batch)["item_id_cover"]  # (B, dim)
            seconds.append(time.perf_counter() - start)
    return {"seconds": min(seconds), "vectors": out, "counts": list(covers.counts().values())}


def worker(args: argparse.Namespace) -> None:
    """Under torchrun: DMP steps without and with covers, interleaved; rank 0 prints one JSON line."""
    from icg_rec.ranking.dmp import shard_tables

    dist.init_process_group("gloo")
    torch.set_num_threads(args.threads)
    rank, world = dist.get_rank(), dist.get_world_size()
    batches = make_batches(args, 8)
    plain = shard_tables(build_model(args, None), torch.device("cpu"))
    wide = shard_tables(build_model(args, None, extra=args.dim), torch.device("cpu"))
    items, cohorts = cover_keys(args.items, args.cohorts)
    config = CoverFeaturesConfig(dtype=args.dtype)
    covers = CoverFeatures(items, cohorts, args.dim, config, device=torch.device("meta"))
    model = shard_tables(build_model(args, covers), torch.device("cpu"), per_table={"covers": "column_wise"})
    start = time.perf_counter()
    fill(model.module.covers, items, cohorts, args.seed)
    load_s = time.perf_counter() - start
    del items, cohorts
    models = {"plain": plain, "wide": wide, "cover": model}
    times = paired_step_times(models, batches, args.steps, rank, world)
    peak = torch.tensor([_peak_mb()], dtype=torch.float64)
    peaks = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
    dist.all_gather(peaks, peak)
    shard = model.state_dict()["covers.tables.embedding_bags.covers.weight"].local_shards()[0].tensor
    if rank == 0:
        t = {name: np.array(values) for name, values in times.items()}
        result = {name: float(np.median(t[name])) for name in models}
        result["overhead"] = float(np.median(t["cover"] / t["plain"])) - 1.0  # neighbouring steps, same load
        result["overhead_cpu"] = float(np.median(t["cover_cpu"] / t["plain_cpu"])) - 1.0
        result["wide_cpu"] = float(np.median(t["wide_cpu"] / t["plain_cpu"])) - 1.0
        result |= {"load_s": load_s, "peak_mb": [float(p) for p in peaks], "shard_shape": list(shard.shape)}
        print("DMP " + json.dumps(result))
    dist.barrier()  # no rank tears gloo down while a peer still works: a vanished peer aborts it
    dist.destroy_process_group()


def run_dmp(args: argparse.Namespace, processes: int) -> dict:
    """The worker under `torchrun --nproc_per_node processes`; its JSON result."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [torchrun, "--nproc_per_node", str(processes), "-m", "eval.bench_cover_features", "--worker"]
    for name in (
        "items",
        "cohorts",
        "dim",
        "dtype",
        "users",
        "batch_size",
        "steps",
        "threads",
        "seed",
    ):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"torchrun failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.split("DMP ", 1)[1].splitlines()[0])


STREAM_SCRIPT = textwrap.dedent(
    """
    import sys
    import polars as pl
    from icg_rec.features.provider import FeatureProvider
    from icg_rec.features.stream import ParquetBatches, parquet_chunks
    provider = FeatureProvider(["user_id", "item_id", "history"], ["x"], ["text"])
    if sys.argv[2] == "stream":
        provider.fit_chunks(parquet_chunks(sys.argv[1], provider.columns(), read_rows=65536))
        rows = sum(len(b.labels) for b, _ in ParquetBatches(sys.argv[1], provider, 2048, read_rows=65536))
    else:  # the in-memory path: read the whole log, fit, encode
        frame = pl.read_parquet(sys.argv[1] + "/*.parquet")
        rows = len(provider.fit(frame).encode(frame))
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(rows, peak_kb // 1024)
    """
)


def stream_peaks(rows: int, seed: int) -> dict:
    """Peak MB of streaming vs reading whole, on logs of `rows` and 10 x `rows` rows (32-d text column)."""
    rng = np.random.default_rng(seed)
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for times in (1, 10):
            folder = Path(tmp) / f"log{times}x"
            folder.mkdir()
            for piece in range(times):  # one file of `rows` rows at a time: this process stays small
                lengths = rng.integers(0, HISTORY + 1, rows)
                history = np.split(rng.integers(0, 100_000, int(lengths.sum())), np.cumsum(lengths)[:-1])
                text = rng.normal(size=(rows, 32)).astype(np.float32)
                pl.DataFrame(
                    {
                        "user_id": rng.integers(0, 100_000, rows),
                        "item_id": rng.integers(0, 100_000, rows),
                        "history": pl.Series(history, dtype=pl.List(pl.Int64)),
                        "x": rng.normal(size=rows),
                        "label": rng.integers(0, 2, rows).astype(float),
                        "text": pl.Series(text, dtype=pl.Array(pl.Float32, 32)),
                    }
                ).write_parquet(folder / f"{piece:03d}.parquet", row_group_size=65536)
            for mode in ("stream", "whole"):
                done = subprocess.run(
                    [sys.executable, "-c", STREAM_SCRIPT, str(folder), mode], capture_output=True, text=True
                )
                if done.returncode != 0:
                    raise SystemExit(f"streaming measurement failed:\n{done.stderr[-3000:]}")
                n, peaks[f"{mode}_{times}x"] = map(int, done.stdout.split())
                if n != rows * times:
                    raise SystemExit(f"{mode} read {n} rows of {rows * times}")
    return peaks


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_cover_features", description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--cohorts", type=int, default=16)
    parser.add_argument("--dim", type=int, default=64, help="cover vector width")
    parser.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16", help="cover table precision")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2048, help="global batch")
    parser.add_argument("--steps", type=int, default=200, help="timed steps of each model (they take turns)")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of each lookup timing (the fastest)")
    parser.add_argument("--stream-rows", type=int, default=200_000, help="rows of the 1x streaming log")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    torch.set_num_threads(args.threads)
    n_covers = args.items * (args.cohorts + 1)
    table_mb = n_covers * args.dim * (2 if args.dtype == "fp16" else 4) / 2**20
    print(
        f"cover table: {args.items} items x ({args.cohorts} cohorts + default) = {n_covers} rows x {args.dim} "
        f"{args.dtype} = {table_mb:.0f} MB (fp32: {n_covers * args.dim * 4 / 2**20:.0f} MB); id -> row grid "
        f"{args.items * (args.cohorts + 1) * 4 / 2**20:.0f} MB"
    )
    examples = args.batch_size  # per step
    dmp = {}
    for processes in (1, 2):
        dmp[processes] = result = run_dmp(args, processes)
        print(
            f"{processes} DMP process(es): plain DLRM {examples / result['plain']:.0f} ex/s (median step); with "
            f"covers {result['overhead']:+.1%} a step wall-clock, {result['overhead_cpu']:+.1%} CPU time, "
            f"of which the {args.dim} wider dense input alone (zeros, no lookup) {result['wide_cpu']:+.1%}; "
            f"cover shard {result['shard_shape']} per process, loaded in {result['load_s']:.1f} s; peak MB "
            f"per process {[round(p) for p in result['peak_mb']]}"
        )

    batch = make_batches(args, 1)[0][1]
    old = store_lookup(args, batch)
    start = time.perf_counter()
    items, cohorts = cover_keys(args.items, args.cohorts)
    covers = CoverFeatures(items, cohorts, args.dim, CoverFeaturesConfig(dtype=args.dtype))
    fill(covers, items, cohorts, args.seed)
    del items, cohorts
    build_s = time.perf_counter() - start
    new = module_lookup(covers, args, batch)
    table = covers.tables.embedding_bags["covers"].weight  # (n_covers, dim)
    expected = table[torch.from_numpy(old["rows"])].float() * torch.from_numpy(old["has_cover"])[:, None]
    print(
        f"lookup of {args.batch_size} keys (unsharded module built and filled in {build_s:.1f} s): polars-join "
        f"store {old['seconds'] * 1e3:.1f} ms, CoverFeatures {new['seconds'] * 1e3:.2f} ms "
        f"({old['seconds'] / new['seconds']:.0f}x); max |difference| {(expected - new['vectors']).abs().max():.1e}; "
        f"exact/fallback/missing: store {old['counts']}, module {new['counts']}"
    )
    del covers
    peaks = stream_peaks(args.stream_rows, args.seed)
    print(
        f"streaming peak MB: {args.stream_rows} rows {peaks['stream_1x']}, 10x rows {peaks['stream_10x']}; "
        f"reading the log whole: {peaks['whole_1x']}, {peaks['whole_10x']}"
    )
    peak_mb = max(_peak_mb(), *dmp[1]["peak_mb"], *dmp[2]["peak_mb"])
    overhead = dmp[1]["overhead_cpu"]
    print(
        f"cover_overhead={overhead:.3f} dmp2_speedup={dmp[1]['cover'] / dmp[2]['cover']:.2f} peak_mb={peak_mb:.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
