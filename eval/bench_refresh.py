"""Cover refresh cost: a full refresh vs an incremental one with 1% of items edited, and throughput by batch.

    python -m eval.bench_refresh [--items 400 --cohorts 2 --steps 6]

The generator is the quickstart's embedded ICG pipeline at 16 px (colour-grid image features, MiniLM
titles; random weights: throughput does not depend on training).
Both refreshes run in this process on the same pipeline, so their ratio is the number to read.
Last line: `incremental_share=X best_covers_per_s=Y`.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.generator import PipelineCoverGenerator
from icg_rec.cohorts.refresh import refresh_covers
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.encoders import MiniLMTextEncoder
from icg_rec.encoders.small import ColourGridEncoder, MemoTextEncoder
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.prompter import PrompterConfig


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--cohorts", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="DDIM steps per cover")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--throughput-batches", default="1,4,16,64")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    work_dir = Path(tempfile.mkdtemp(prefix="bench_refresh_"))
    world = SimWorld.generate(
        SimConfig(n_users=200, n_items=args.items, n_cohorts=args.cohorts, image_size=16, seed=args.seed)
    )
    items = world.save_covers(work_dir / "references").items
    prompter = PrompterConfig(
        hidden_size=64, num_layers=2, num_heads=4, num_meta_tokens=4, image_prefix_tokens=2
    )
    config = GeneratorConfig(
        resolution=16, cross_attention_dim=64, num_tokens=4, user_dim=16, prompter=prompter
    )
    text = MemoTextEncoder(MiniLMTextEncoder())
    pipeline = build_pipeline(config, ColourGridEncoder(image_size=16).freeze(), text)
    taste = np.random.default_rng(args.seed).normal(size=(200, 16)).astype(np.float32)
    cohorts = UserCohorts(CohortConfig(n_cohorts=args.cohorts, seed=args.seed)).fit(np.arange(200), taste)

    def generator_for(frame: pl.DataFrame) -> PipelineCoverGenerator:
        return PipelineCoverGenerator(
            pipeline, frame["item_id"], frame["title"], frame["image_path"], args.steps, guidance_scale=3.0
        )

    out = work_dir / "refresh"
    start = time.perf_counter()
    _, full = refresh_covers(
        items, cohorts, generator_for(items), out, args.seed, args.batch_size, progress=False
    )
    full_s = time.perf_counter() - start

    n_changed = max(1, round(0.01 * items.height))
    changed_ids = items["item_id"].head(n_changed)
    edited = items.with_columns(
        title=pl.when(pl.col("item_id").is_in(changed_ids.implode()))
        .then(pl.col("title") + " (new)")
        .otherwise("title")
    )
    start = time.perf_counter()
    _, incremental = refresh_covers(
        edited, cohorts, generator_for(edited), out, args.seed, args.batch_size, progress=False
    )
    incremental_s = time.perf_counter() - start
    print(
        f"full refresh: {full.generated} covers in {full_s:.2f} s; incremental ({n_changed} of {items.height} items "
        f"edited): {incremental.generated} covers, {incremental.cached} cached, in {incremental_s:.2f} s"
    )

    generator = generator_for(items)
    n_covers = 64
    item_ids = torch.from_numpy(items["item_id"].to_numpy()[np.arange(n_covers) % items.height])
    users = torch.from_numpy(cohorts.centroids_[np.arange(n_covers) % args.cohorts])
    rates = {}
    for batch_size in (int(b) for b in args.throughput_batches.split(",")):
        start = time.perf_counter()
        for offset in range(0, n_covers, batch_size):
            sl = slice(offset, offset + batch_size)
            generator.generate(
                item_ids[sl], users[sl], list(range(offset, min(offset + batch_size, n_covers)))
            )
        rates[batch_size] = n_covers / (time.perf_counter() - start)
        print(
            f"batch {batch_size:>3}: {rates[batch_size]:.2f} covers/s ({args.steps} DDIM steps, CFG, 16x16)"
        )
    shutil.rmtree(work_dir)
    print(f"incremental_share={incremental_s / full_s:.4f} best_covers_per_s={max(rates.values()):.2f}")


if __name__ == "__main__":
    main()
