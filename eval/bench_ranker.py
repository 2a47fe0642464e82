"""DLRM training throughput: with vs without cover features (same batches), and 1 vs 2 DMP processes.

    python -m eval.bench_ranker [--rows 20000 --steps 40 --rounds 3 --threads 1]

Synthetic frames (ids, 4 dense columns, a 32-d text vector; the cover store holds a 64-d vector per
(item, cohort), 10% of items without any cover). Cover overhead: training steps (forward, backward,
fused sparse + Adam dense update) on the same global batches, the two models interleaved per round,
median over rounds. DMP: the same step loop in 1 process and under `torchrun --nproc_per_node 2`
(table-wise, gloo), timed inside the processes after 2 warm-up steps; rank 0 reports examples/s.
Last line: `cover_overhead=X dmp2_speedup=Y`.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from icg_rec.features.provider import FeatureProvider, batch_rows
from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore
from icg_rec.ranking.dlrm import TorchRecConfig, build_dlrm
from icg_rec.ranking.dmp import rank_and_world, shard_tables

DENSE = ["d0", "d1", "d2", "d3"]


def make_data(rows: int, seed: int) -> tuple[pl.DataFrame, CoverEmbeddingStore, pl.DataFrame]:
    """Frame, cover store (default + 4 cohorts per item, 10% of items uncovered) and user cohorts."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(rows // 20, 10), max(rows // 40, 10)
    frame = pl.DataFrame(
        {
            "user_id": rng.integers(0, n_users, rows),
            "item_id": rng.integers(0, n_items, rows),
            "label": rng.integers(0, 2, rows).astype(np.float64),
            **{c: rng.normal(size=rows) for c in DENSE},
        }
    ).with_columns(
        pl.Series("text", rng.normal(size=(rows, 32)).astype(np.float32), dtype=pl.Array(pl.Float32, 32))
    )
    covered = np.arange(int(n_items * 0.9))
    items = np.repeat(covered, 5)
    cohorts = np.tile(np.array([DEFAULT_COHORT, 0, 1, 2, 3]), len(covered))
    store = CoverEmbeddingStore().build(items, cohorts, rng.normal(size=(len(items), 64)).astype(np.float32))
    user_cohorts = pl.DataFrame({"user_id": np.arange(n_users), "cohort_id": rng.integers(0, 5, n_users)})
    return frame, store, user_cohorts


def timed_steps(
    provider: FeatureProvider, frame: pl.DataFrame, steps: int, batch_size: int, seed: int
) -> float:
    """Seconds for `steps` training steps (after 2 warm-up steps) of a fresh DLRM; DMP if a group is up."""
    rank, world = rank_and_world()
    encoded = provider.encode(frame)
    config = TorchRecConfig(batch_size=batch_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_dlrm(config, provider.table_sizes(), provider.dense_width)
    apply_optimizer_in_backward(RowWiseAdagrad, model.sparse_arch.parameters(), {"lr": config.sparse_lr})
    if world > 1:
        model = shard_tables(model, torch.device("cpu"))
    optimizer = torch.optim.Adam([p for _, p in in_backward_optimizer_filter(model.named_parameters())])
    order = batch_rows(len(encoded), batch_size, shuffle=True, seed=seed)
    order = [rows for rows in order if len(rows) == batch_size]
    batches = [
        provider.batch(encoded, torch.tensor_split(order[i % len(order)], world)[rank])
        for i in range(steps + 2)
    ]
    for i, batch in enumerate(batches):
        if i == 2:
            if world > 1:
                dist.barrier()
            start = time.perf_counter()
        logits = model(batch.dense_features, batch.sparse_features).squeeze(-1)  # (b,)
        loss = F.binary_cross_entropy_with_logits(logits, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if world > 1:
        dist.barrier()
    return time.perf_counter() - start


def _providers(frame, store, user_cohorts) -> tuple[FeatureProvider, FeatureProvider]:
    plain = FeatureProvider(["user_id", "item_id"], DENSE, ["text"]).fit(frame)
    cover = FeatureProvider(
        ["user_id", "item_id"], DENSE, ["text"], cover_store=store, user_cohorts=user_cohorts
    )
    return plain, cover.fit(frame)


def worker(args: argparse.Namespace) -> None:
    """Under torchrun: the DMP step loop; rank 0 prints `dmp_seconds=S`."""
    dist.init_process_group("gloo")
    torch.set_num_threads(args.threads)
    frame, store, user_cohorts = make_data(args.rows, args.seed)
    _, cover = _providers(frame, store, user_cohorts)
    seconds = timed_steps(cover, frame, args.steps, args.batch_size, args.seed)
    if dist.get_rank() == 0:
        print(f"dmp_seconds={seconds}")
    dist.barrier()  # no rank tears gloo down while a peer still works: a vanished peer aborts it
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_ranker", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved plain/cover rounds (median)")
    parser.add_argument("--batch-size", type=int, default=512, help="global batch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    torch.set_num_threads(args.threads)
    frame, store, user_cohorts = make_data(args.rows, args.seed)
    plain, cover = _providers(frame, store, user_cohorts)
    start = time.perf_counter()
    encoded = cover.encode(frame)
    lookup_s = time.perf_counter() - start
    print(
        f"data: {args.rows} rows, dense width {plain.dense_width} plain / {cover.dense_width} with cover; "
        f"cover lookup for all rows {lookup_s:.3f} s (exact {encoded.n_cover_exact}, "
        f"fallback {encoded.n_cover_fallback}, missing {encoded.n_cover_missing})"
    )
    times = {"plain": [], "cover": []}
    for r in range(args.rounds):
        for name, provider in (("plain", plain), ("cover", cover)):
            times[name].append(timed_steps(provider, frame, args.steps, args.batch_size, args.seed))
        print(
            f"round {r}: plain {times['plain'][-1]:.3f} s, cover {times['cover'][-1]:.3f} s ({args.steps} steps)"
        )
    plain_s, cover_s = float(np.median(times["plain"])), float(np.median(times["cover"]))
    examples = args.steps * args.batch_size
    print(f"1 process: plain {examples / plain_s:.0f} ex/s, cover {examples / cover_s:.0f} ex/s")

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [torchrun, "--nproc_per_node", "2", "-m", "eval.bench_ranker", "--worker"]
    command += ["--rows", str(args.rows), "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    command += ["--threads", str(args.threads), "--seed", str(args.seed)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"torchrun failed:\n{done.stderr[-3000:]}")
    dmp_s = float(done.stdout.split("dmp_seconds=")[1].split()[0])
    print(f"2 DMP processes (cover): {examples / dmp_s:.0f} ex/s (1 process {examples / cover_s:.0f} ex/s)")
    print(f"cover_overhead={cover_s / plain_s - 1:.3f} dmp2_speedup={cover_s / dmp_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
