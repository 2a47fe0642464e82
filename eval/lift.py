"""Lift of cover features on a ranker: `python -m eval.lift --dataset movielens --protocol cold --out out/lift`.

Baseline and treatment arms are FeatureSpecs over one feature frame (icg_rec.ranking.lift). MovieLens
arms: `base` (ids + out-of-fold id click rates + PCA of the title/genre text embedding), `poster`
(+ PCA of the poster embedding), `poster_taste` (+ poster taste cosine), `text_taste` (+ text taste
cosine). SimWorld arms: `ids`, `cover` (+ PCA of the cover embedding), `cover_taste` (+ cover taste
cosine). Writes lift.json, report.md and plots to --out.

`--dataset simworld --covers RUN` measures the covers of a quickstart (or refresh) output folder instead,
with the arms of icg_rec.ranking.cover_arms: `no_cover` (ids + click rates), `original_cover` and
`personalized_cover` (the cover refreshed for the user's cohort), each cover as its colour-grid
embedding and its out-of-fold personalized reward score (a cnn-tower reward model fitted here on the
training clicks, as in the quickstart). Training rows' cohorts are refitted out-of-fold
(`--cohorts-source given` takes RUN's cohorts as they are: fitted on all training clicks, in-sample);
`--cohort-arm` adds the arm `cohort_id` (ids + click rates + the user's cohort id) to measure the cohort
id alone. RUN is either a quickstart folder (quickstart.json, refresh/,
cohorts/; the world is rebuilt from quickstart.json) or a refresh folder (manifest.parquet, covers/)
with `--cohorts` and the --sim-* flags of the world its covers were made for.
"""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from icg_rec.data.paths import movielens_dir
from icg_rec.data.schema import Dataset
from icg_rec.data.splits import cold_item_split, per_user_temporal_split
from icg_rec.encoders import (
    EfficientNetLite0Encoder,
    EmbeddingCache,
    MiniLMTextEncoder,
    embed_items,
    encode_cached,
)
from icg_rec.encoders.small import ColourGridEncoder
from icg_rec.errors import SchemaError
from icg_rec.io import config_from_dict
from icg_rec.ranking.base import FeatureSpec
from icg_rec.ranking.cover_arms import (
    NO_COVER,
    CoverArmsConfig,
    CoverRun,
    ItemCovers,
    build_cover_arms,
    read_cover_run,
    reward_model_scorer,
)
from icg_rec.ranking.lift import (
    ItemVectors,
    LiftConfig,
    LiftResult,
    build_lift_frames,
    run_lift,
    write_lift_report,
)
from icg_rec.rewards.personalized import PersonalizedConfig

if TYPE_CHECKING:
    from icg_rec.data.sim import SimWorld

USER = ["user_id_ctr", "user_id_log_n"]
ITEM = ["item_id_ctr", "item_id_log_n"]
CONTENT = {
    "movielens": {  # name -> (extra dense columns, extra embedding columns) over the baseline
        "base": ([], ["text_pca"]),
        "poster": ([], ["text_pca", "poster_pca"]),
        "poster_taste": (["poster_taste"], ["text_pca"]),
        "text_taste": (["text_taste"], ["text_pca"]),
    },
    "simworld": {
        "ids": ([], []),
        "cover": ([], ["cover_pca"]),
        "cover_taste": (["cover_taste"], []),
    },
}


def arms_for(dataset: str, protocol: str) -> dict[str, FeatureSpec]:
    """The arms of a dataset under a protocol; the first is the baseline.

    Warm: user and item ids (LightGBM categorical) plus their out-of-fold click rates and counts.
    Cold: user side only. Every test item is unseen, so item ids and item statistics carry nothing
    at test time, and a model trained on them leans on them instead of content (measured on the
    MovieLens cold split: ids + item stats + text 0.735 AUC, user side + text 0.748).
    """
    sparse, dense = (["user_id", "item_id"], USER + ITEM) if protocol == "warm" else (["user_id"], USER)
    return {
        name: FeatureSpec(sparse=sparse, dense=dense + extra_dense, embeddings=embeddings)
        for name, (extra_dense, embeddings) in CONTENT[dataset].items()
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval.lift", description=__doc__)
    parser.add_argument("--dataset", choices=sorted(CONTENT), default="movielens")
    parser.add_argument("--data-dir", type=Path, default=None, help="MovieLens folder (default: shared data)")
    parser.add_argument(
        "--protocol", choices=["warm", "cold"], default="warm", help="warm: each user's last 20%%"
    )
    parser.add_argument("--arms", default=None, help="comma-separated arms, baseline first (default: all)")
    parser.add_argument("--ranker", choices=["lightgbm", "torchrec"], default="lightgbm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n-boot", type=int, default=1000, help="user-level bootstrap resamples")
    parser.add_argument("--text-pca", type=int, default=32, help="PCA width of the text embedding")
    parser.add_argument("--image-pca", type=int, default=16, help="PCA width of the poster/cover embedding")
    parser.add_argument("--sim-users", type=int, default=2000)
    parser.add_argument("--sim-items", type=int, default=400)
    parser.add_argument("--sim-impressions", type=int, default=40, help="impressions per SimWorld user")
    parser.add_argument("--sim-seed", type=int, default=0)
    parser.add_argument(
        "--covers", type=Path, default=None, help="quickstart or refresh output folder (simworld only)"
    )
    parser.add_argument(
        "--cohorts", type=Path, default=None, help="cohorts folder of --covers (default: RUN/cohorts)"
    )
    parser.add_argument(
        "--cohorts-source",
        choices=["out_of_fold", "given"],
        default="out_of_fold",
        help="--covers: training rows' cohorts refitted out-of-fold, or RUN's cohorts as given (in-sample)",
    )
    parser.add_argument(
        "--cohort-arm", action="store_true", help="--covers: add the arm ids + rates + cohort id"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (more stalled tiny models on a busy box)"
    )
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "icg_rec")
    parser.add_argument("--out", type=Path, default=Path("out/lift"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.covers is not None:
        return _main_covers(args)
    arms = arms_for(args.dataset, args.protocol)
    if args.arms is not None:
        names = args.arms.split(",")
        if unknown := [n for n in names if n not in arms]:
            raise SystemExit(f"unknown arm(s) {unknown} for {args.dataset}; known: {sorted(arms)}")
        arms = {n: arms[n] for n in names}
    if args.dataset == "movielens":
        dataset, vectors = _movielens(args)
    else:
        dataset, vectors = _simworld(args)
    split = per_user_temporal_split if args.protocol == "warm" else cold_item_split
    train, test = split(dataset.interactions)
    train, test = build_lift_frames(train, test, vectors, seed=0)
    config = LiftConfig(baseline=next(iter(arms)), seeds=args.seeds, n_boot=args.n_boot)
    result = run_lift(train, test, arms, _ranker_factory(args.ranker), config)
    meta = {"dataset": dataset.name, "ranker": args.ranker, "protocol": args.protocol, "seeds": args.seeds}
    _print(result, config.baseline, write_lift_report(result, args.out, meta))
    return 0


def _main_covers(args: argparse.Namespace) -> int:
    """The three cover arms on the covers of a quickstart or refresh folder."""
    if args.dataset != "simworld":
        raise SystemExit("--covers reads covers refreshed for a SimWorld; use it with --dataset simworld")
    if args.arms is not None:
        raise SystemExit(
            "--covers runs the fixed arms no_cover, original_cover, personalized_cover; drop --arms"
        )
    run = read_cover_run(args.covers, args.cohorts)
    world = _cover_world(args, run)
    train, test = (per_user_temporal_split if args.protocol == "warm" else cold_item_split)(
        world.dataset.interactions
    )
    size = world.config.image_size
    grid = ColourGridEncoder(image_size=size).freeze()

    def embed(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return grid(images).numpy()  # (n, d)

    original = ItemCovers(np.arange(world.config.n_items), world.covers)
    lift = LiftConfig(baseline=NO_COVER, seeds=args.seeds, n_boot=args.n_boot)
    base = arms_for("simworld", args.protocol)["ids"]
    train, test, arms = build_cover_arms(
        train,
        test,
        original,
        run.refreshed,
        run.user_cohorts,
        embed,
        CoverArmsConfig(pca_dim=args.image_pca, cohorts=args.cohorts_source, lift=lift),
        fit_scorer=reward_model_scorer(_reward_config(size), original),
        base=base,
    )
    if args.cohort_arm:
        cohort = FeatureSpec(sparse=[*base.sparse, "cohort_id"], dense=base.dense, embeddings=base.embeddings)
        arms = {
            NO_COVER: arms[NO_COVER],
            "cohort_id": cohort,
            **{k: v for k, v in arms.items() if k != NO_COVER},
        }
    result = run_lift(train, test, arms, _ranker_factory(args.ranker), lift)
    meta = {
        "dataset": world.dataset.name,
        "ranker": args.ranker,
        "protocol": args.protocol,
        "seeds": args.seeds,
        "covers": str(args.covers),
        "cohorts_source": args.cohorts_source,
    }
    _print(result, NO_COVER, write_lift_report(result, args.out, meta))
    return 0


def _reward_config(image_size: int) -> PersonalizedConfig:
    """The quickstart's reward model settings (they depend on the cover size only)."""
    from icg_rec.quickstart import QuickstartConfig  # heavy (generation, alignment): only for --covers

    return QuickstartConfig(image_size=image_size).reward_config()


def _cover_world(args: argparse.Namespace, run: CoverRun) -> "SimWorld":
    """The world the covers were made for: from quickstart.json, else from the --sim-* flags."""
    from icg_rec.data.sim import SimConfig, SimWorld

    size = run.refreshed.images.shape[-1]
    if run.quickstart_config is not None:
        from icg_rec.quickstart import QuickstartConfig

        quickstart = config_from_dict(
            QuickstartConfig, run.quickstart_config, source="quickstart.json config"
        )
        config = quickstart.sim_config()
    else:
        config = SimConfig(
            n_users=args.sim_users,
            n_items=args.sim_items,
            impressions_per_user=args.sim_impressions,
            seed=args.sim_seed,
            image_size=size,
        )
    if size != config.image_size:
        raise SchemaError(f"refreshed covers are {size} px, the world's covers {config.image_size} px")
    return SimWorld.generate(config)


def _print(result: LiftResult, baseline: str, path: Path) -> None:
    for name, t in result.lift.items():
        print(
            f"{name}: AUC {result.arms[name].auc:.4f} vs {baseline} {result.arms[baseline].auc:.4f}, "
            f"delta {t.auc_delta:+.4f} [{t.ci95[0]:+.4f}, {t.ci95[1]:+.4f}] p={t.p_value:.3f}"
        )
    print(f"wrote {path}")


def _movielens(args: argparse.Namespace) -> tuple[Dataset, list[ItemVectors]]:
    from icg_rec.data.movielens import load_movielens_with_posters

    dataset = load_movielens_with_posters(args.data_dir or movielens_dir())
    items = dataset.items.sort("item_id")
    ids = items["item_id"].to_numpy()
    cache = EmbeddingCache(args.cache_dir)
    text, poster = embed_items(items, MiniLMTextEncoder(), EfficientNetLite0Encoder(), cache, progress=True)
    return dataset, [
        ItemVectors("text", ids, text, args.text_pca),
        ItemVectors("poster", ids, poster, args.image_pca),
    ]


def _simworld(args: argparse.Namespace) -> tuple[Dataset, list[ItemVectors]]:
    from icg_rec.data.sim import SimConfig, SimWorld

    config = SimConfig(
        n_users=args.sim_users,
        n_items=args.sim_items,
        impressions_per_user=args.sim_impressions,
        seed=args.sim_seed,
    )
    world = SimWorld.generate(config)
    pixels = (world.covers * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (n_items, S, S, 3)
    covers = [Image.fromarray(tile) for tile in pixels]  # what save_covers writes, kept in memory
    cover = encode_cached(EfficientNetLite0Encoder(), covers, EmbeddingCache(args.cache_dir), progress=True)
    ids = np.arange(len(covers), dtype=np.int64)
    return world.dataset, [ItemVectors("cover", ids, cover, args.image_pca)]


def _ranker_factory(name: str):
    if name == "lightgbm":
        from icg_rec.ranking.lightgbm_ranker import LightGBMRanker

        return LightGBMRanker
    from icg_rec.ranking.torchrec_ranker import TorchRecRanker

    return TorchRecRanker


if __name__ == "__main__":
    sys.exit(main())
