"""`icg-rec cohorts fit` and `icg-rec refresh`: shell entry points over clustering and refresh."""

import argparse

import numpy as np
import polars as pl

from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.generator import PipelineCoverGenerator
from icg_rec.cohorts.refresh import refresh_covers
from icg_rec.data.schema import validate_items
from icg_rec.errors import SchemaError


def fit_cohorts(args: argparse.Namespace) -> None:
    """Fits cohorts on a parquet of user_id + embedding (a fixed-width float list), keeping ids of --previous."""
    frame = pl.read_parquet(args.users)
    if missing := {"user_id", "embedding"} - set(frame.columns):
        raise SchemaError(f"{args.users} is missing column(s) {sorted(missing)}; expected user_id, embedding")
    vectors = np.asarray(frame["embedding"].to_list(), dtype=np.float32)
    previous = UserCohorts.load(args.previous) if args.previous else None
    config = CohortConfig(n_cohorts=args.n_cohorts, seed=args.seed)
    cohorts = UserCohorts(config).fit(frame["user_id"].to_numpy(), vectors, previous=previous)
    cohorts.save(args.out)
    print(
        f"{len(cohorts.user_ids_)} users in {config.n_cohorts} cohorts; versions {cohorts.versions_} -> {args.out}"
    )


def refresh(args: argparse.Namespace) -> None:
    """Refreshes the covers of every (item, cohort) that changed; under torchrun each rank takes a shard."""
    from icg_rec.generation.fast import FastConfig
    from icg_rec.generation.pipeline import ICGPipeline  # heavy: only when asked for

    items = validate_items(pl.read_parquet(args.items))
    if (no_image := items["image_path"].is_null().sum()) > 0:
        raise SchemaError(
            f"{no_image} item(s) in {args.items} have no image_path; the generator needs a reference"
        )
    pipeline = ICGPipeline.from_pretrained(args.pipeline)
    generator = PipelineCoverGenerator(
        pipeline,
        items["item_id"],
        items["title"],
        items["image_path"],
        args.steps,
        args.guidance,
        device=args.device,
        dtype=args.dtype,
        fast=FastConfig(
            channels_last=args.channels_last,
            fuse_qkv=args.fuse_qkv,
            compile=args.compile,
            tiny_decoder=str(args.tiny_decoder or ""),
        ),
    )
    manifest, stats = refresh_covers(
        items, UserCohorts.load(args.cohorts), generator, args.out, args.seed, args.batch_size,
        writers=args.writers,
    )  # fmt: skip
    repaired = f" ({stats.repaired} of them to replace damaged files)" if stats.repaired else ""
    print(
        f"generated {stats.generated}{repaired}, reused {stats.cached} of {stats.work} covers "
        f"in {stats.seconds:.1f} s" + ("" if manifest is None else f"; manifest: {args.out}/manifest.parquet")
    )
