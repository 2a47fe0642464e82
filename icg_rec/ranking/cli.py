"""`icg-rec ranker fit`."""

import argparse
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    """Registers the `ranker` command group."""
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
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", default="cpu", help="cpu, or cuda (cuda:LOCAL_RANK per process, nccl)")
    fit.add_argument(
        "--stream", action="store_true", help="stream --train in bounded memory (file order, no shuffling)"
    )
    fit.add_argument("--out", type=Path, required=True, help="checkpoint folder (written by rank 0)")
    fit.set_defaults(run=_run_fit)


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
