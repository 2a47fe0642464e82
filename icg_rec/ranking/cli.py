"""`icg-rec ranker fit` and `icg-rec lift`."""

import argparse
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    """Registers the `ranker` command group and `lift`."""
    from icg_rec.argtypes import seed

    ranker = groups.add_parser("ranker", help="TorchRec DLRM rankers").add_subparsers(
        dest="command", required=True
    )
    fit = ranker.add_parser("fit", help="fit a TorchRecRanker from parquet; under torchrun: DMP, table-wise")
    fit.add_argument("--train", type=Path, required=True, help="parquet frame with the spec's columns")
    fit.add_argument("--valid", type=Path, default=None, help="parquet frame for early stopping on AUC")
    fit.add_argument("--sparse", nargs="+", required=True, help="id columns")
    fit.add_argument("--dense", nargs="*", default=[], help="float scalar columns")
    fit.add_argument("--embeddings", nargs="*", default=[], help="pl.Array vector columns")
    fit.add_argument("--label", default="label", help="0/1 click column")
    fit.add_argument("--config", type=Path, default=None, help="TOML with TorchRecConfig fields")
    fit.add_argument("--cover-store", type=Path, default=None, help="folder of a saved CoverEmbeddingStore")
    fit.add_argument("--user-cohorts", type=Path, default=None, help="parquet frame (user_id, cohort_id)")
    fit.add_argument("--seed", type=seed, default=0)
    fit.add_argument("--device", default="cpu", help="cpu, or cuda (cuda:LOCAL_RANK per process, nccl)")
    fit.add_argument(
        "--stream", action="store_true", help="stream --train in bounded memory (file order, no shuffling)"
    )
    fit.add_argument("--out", type=Path, required=True, help="checkpoint folder (written by rank 0)")
    fit.set_defaults(run=_run_fit)
    _add_lift(groups)


def _run_fit(args: argparse.Namespace) -> None:
    from icg_rec.ranking.base import FeatureSpec
    from icg_rec.ranking.torchrec_ranker import fit_from_files  # imports torchrec: only when asked for

    spec = FeatureSpec(args.sparse, args.dense, args.embeddings, args.label)
    fit_from_files(
        args.train,
        args.out,
        spec,
        args.valid,
        args.config,
        args.cover_store,
        args.user_cohorts,
        args.seed,
        args.device,
        args.stream,
    )


def _add_lift(groups: argparse._SubParsersAction) -> None:
    """`lift`: the content-feature lift harness (icg_rec.ranking.harness)."""
    from icg_rec.argtypes import positive_int, seed

    lift = groups.add_parser(
        "lift", help="do item text / image features lift a ranker? (MovieLens, SimWorld)"
    )
    lift.add_argument("--dataset", choices=["movielens", "simworld"], default="movielens")
    lift.add_argument("--data-dir", default=None, help="MovieLens folder (default: shared data)")
    lift.add_argument(
        "--protocol", choices=["warm", "cold"], default="warm", help="warm: each user's last 20%%"
    )
    lift.add_argument("--arms", default=None, help="comma-separated arms, baseline first (default: all)")
    lift.add_argument("--ranker", choices=["lightgbm", "torchrec"], default="lightgbm")
    lift.add_argument("--seeds", type=seed, nargs="+", default=[0, 1, 2, 3, 4])
    lift.add_argument("--n-boot", type=positive_int, default=1000, help="user-level bootstrap resamples")
    lift.add_argument("--text-pca", type=positive_int, default=32, help="PCA width of the text embedding")
    lift.add_argument(
        "--image-pca", type=positive_int, default=16, help="PCA width of the poster/cover embedding"
    )
    lift.add_argument("--sim-users", type=positive_int, default=2000)
    lift.add_argument("--sim-items", type=positive_int, default=400)
    lift.add_argument(
        "--sim-impressions", type=positive_int, default=40, help="impressions per SimWorld user"
    )
    lift.add_argument("--sim-seed", type=seed, default=0)
    lift.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads (more stalled tiny models on a busy box)",
    )
    lift.add_argument("--cache-dir", default="~/.cache/icg_rec")
    lift.add_argument("--out", type=Path, default=Path("out/lift"))
    lift.set_defaults(run=_run_lift)


def _run_lift(args: argparse.Namespace) -> None:
    import torch

    from icg_rec.ranking.harness import HarnessConfig, run_harness
    from icg_rec.ranking.lift import LiftConfig

    torch.set_num_threads(args.threads)
    config = HarnessConfig(
        dataset=args.dataset,
        protocol=args.protocol,
        arms=args.arms.split(",") if args.arms else [],
        ranker=args.ranker,
        lift=LiftConfig(seeds=args.seeds, n_boot=args.n_boot),
        text_pca=args.text_pca,
        image_pca=args.image_pca,
        sim_users=args.sim_users,
        sim_items=args.sim_items,
        sim_impressions=args.sim_impressions,
        sim_seed=args.sim_seed,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
    )
    result, path = run_harness(config, args.out)
    baseline = next(name for name in result.arms if name not in result.lift)
    for name, t in result.lift.items():
        print(
            f"{name}: AUC {result.arms[name].auc:.4f} vs {baseline} {result.arms[baseline].auc:.4f}, "
            f"delta {t.auc_delta:+.4f} [{t.ci95[0]:+.4f}, {t.ci95[1]:+.4f}] p={t.p_value:.3f}"
        )
    print(f"wrote {path}")
