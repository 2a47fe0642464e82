"""The `icg-rec` command. It only composes the library; each group lives in its own function."""

import argparse
import sys
from pathlib import Path


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icg-rec", description=__doc__)
    groups = parser.add_subparsers(dest="group", required=True)
    # Each command group registers here: one `_add_<group>(groups)` call per group.
    _add_data(groups)
    _add_sim(groups)
    _add_ranker(groups)
    _add_rewards(groups)
    _add_generator(groups)
    _add_generator_align(groups)
    _add_cohorts(groups)
    _add_ab(groups)
    _add_quickstart(groups)
    return parser


def _add_cohorts(groups: argparse._SubParsersAction) -> None:
    cohorts = groups.add_parser("cohorts", help="user cohorts with stable ids").add_subparsers(
        dest="command", required=True
    )
    fit = cohorts.add_parser("fit", help="k-means over user embeddings, keeping the ids of --previous")
    fit.add_argument("--users", type=Path, required=True, help="parquet: user_id, embedding (float list)")
    fit.add_argument("--n-cohorts", type=int, default=8)
    fit.add_argument("--previous", type=Path, default=None, help="cohorts folder of the last fit")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", type=Path, required=True, help="cohorts folder to write")

    refresh = groups.add_parser("refresh", help="generate the covers of every (item, cohort) that changed")
    refresh.add_argument("--pipeline", type=Path, required=True, help="ICGPipeline folder (save_pretrained)")
    refresh.add_argument("--cohorts", type=Path, required=True, help="cohorts folder (icg-rec cohorts fit)")
    refresh.add_argument(
        "--items", type=Path, required=True, help="parquet: item_id, title, text, image_path"
    )
    refresh.add_argument("--out", type=Path, required=True, help="refresh folder: covers/ + manifest.parquet")
    refresh.add_argument("--steps", type=int, default=20, help="DDIM steps per cover")
    refresh.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance weight")
    refresh.add_argument("--batch-size", type=int, default=16)
    refresh.add_argument("--seed", type=int, default=0)

    def run_fit(args: argparse.Namespace) -> None:
        from icg_rec.cohorts.commands import fit_cohorts

        fit_cohorts(args)

    def run_refresh(args: argparse.Namespace) -> None:
        from icg_rec.cohorts.commands import refresh

        refresh(args)

    fit.set_defaults(run=run_fit)
    refresh.set_defaults(run=run_refresh)


def _add_ab(groups: argparse._SubParsersAction) -> None:
    ab = groups.add_parser("ab", help="prepare the A/B test").add_subparsers(dest="command", required=True)
    plan = ab.add_parser("plan", help="assignment table, per-arm cover manifests, experiment spec")
    plan.add_argument("--interactions", type=Path, required=True, help="pre-period log (parquet)")
    plan.add_argument(
        "--items", type=Path, required=True, help="items parquet (original covers in image_path)"
    )
    plan.add_argument("--manifest", type=Path, required=True, help="refresh manifest.parquet")
    plan.add_argument(
        "--config", type=Path, default=None, help="TOML with an [ab] table of ABPlanConfig fields"
    )
    plan.add_argument("--expected-lift", type=float, default=None, help="relative CTR lift to size for")
    plan.add_argument("--out", type=Path, required=True)

    def run(args: argparse.Namespace) -> None:
        from icg_rec.experiment.commands import plan as plan_command

        plan_command(args)

    plan.set_defaults(run=run)


def _add_quickstart(groups: argparse._SubParsersAction) -> None:
    quick = groups.add_parser("quickstart", help="the whole ICG loop on SimWorld, with a report")
    quick.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    quick.add_argument("--config", type=Path, default=None, help="TOML with QuickstartConfig fields")
    quick.add_argument("--seed", type=int, default=None, help="overrides the config's seed")

    def run(args: argparse.Namespace) -> None:
        from icg_rec.io import load_toml_config
        from icg_rec.quickstart import QuickstartConfig, run_quickstart

        config = load_toml_config(QuickstartConfig, args.config) if args.config else QuickstartConfig()
        if args.seed is not None:
            config.seed = args.seed
        result = run_quickstart(args.out, config)
        oracle = result["oracle_ctr"]
        print(
            f"oracle CTR original {oracle['original']:.4f}, generic {oracle['generic']:.4f}, "
            f"personalized {oracle['aligned_personalized']:.4f}; report: {args.out}/report.md "
            f"({result['seconds']:.0f} s)"
        )

    quick.set_defaults(run=run)


def _add_data(groups: argparse._SubParsersAction) -> None:
    from icg_rec.data.describe import run_describe

    data = groups.add_parser("data", help="inspect datasets").add_subparsers(dest="command", required=True)
    describe = data.add_parser(
        "describe", help="count users, items, posters, interactions, clicks, time range"
    )
    describe.add_argument("--dataset", choices=["movielens", "simworld"], default="movielens")
    describe.add_argument(
        "--data-dir", type=Path, default=None, help="MovieLens root (default: paths.movielens_dir())"
    )
    describe.add_argument(
        "--layout", default="ml-latest-small", help="MovieLens layout folder inside --data-dir"
    )
    describe.add_argument("--json", type=Path, default=None, help="also write the counts to this JSON file")
    describe.add_argument("--seed", type=int, default=0, help="SimWorld seed")
    describe.set_defaults(
        run=lambda args: run_describe(args.dataset, args.data_dir, args.layout, args.json, args.seed)
    )


def _add_sim(groups: argparse._SubParsersAction) -> None:
    sim = groups.add_parser("sim", help="synthetic world with a known click oracle").add_subparsers(
        dest="command", required=True
    )
    generate = sim.add_parser("generate", help="write a SimWorld: parquet frames, PNG covers, config.json")
    generate.add_argument("--out", type=Path, required=True, help="destination folder")
    generate.add_argument(
        "--config", type=Path, default=None, help="TOML with SimConfig fields (default: built-in)"
    )
    generate.add_argument("--seed", type=int, default=None, help="overrides the config's seed")

    def run(args: argparse.Namespace) -> None:
        from icg_rec.data.sim.export import run_generate  # imports torch: only when asked for

        run_generate(args.out, args.config, args.seed)

    generate.set_defaults(run=run)


def _add_ranker(groups: argparse._SubParsersAction) -> None:
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
    fit.add_argument("--out", type=Path, required=True, help="checkpoint folder (written by rank 0)")

    def run(args: argparse.Namespace) -> None:
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
        )

    fit.set_defaults(run=run)


def _add_rewards(groups: argparse._SubParsersAction) -> None:
    rewards = groups.add_parser(
        "rewards", help="personalized, aesthetic and relevance rewards"
    ).add_subparsers(dest="command", required=True)
    train = rewards.add_parser("train", help="fit the personalized reward model or the relevance projection")
    train.add_argument("--model", choices=["personalized", "relevance"], default="personalized")
    train.add_argument("--dataset", choices=["movielens", "simworld"], default="movielens")
    train.add_argument("--data-dir", type=Path, default=None, help="MovieLens folder (default: shared data)")
    train.add_argument("--config", type=Path, default=None, help="TOML with PersonalizedConfig fields")
    train.add_argument("--sim-users", type=int, default=2000, help="SimWorld users")
    train.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "icg_rec")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True, help="model folder")
    score = rewards.add_parser("score", help="score covers: images folder or manifest in, parquet out")
    score.add_argument("--images", type=Path, default=None, help="folder of .jpg/.png covers")
    score.add_argument(
        "--manifest", type=Path, default=None, help="CSV/parquet: image_path [item_id user_id title]"
    )
    score.add_argument("--personalized", type=Path, default=None, help="folder of a saved personalized model")
    score.add_argument("--relevance", type=Path, default=None, help="folder of a saved relevance model")
    score.add_argument("--image-size", type=int, default=224, help="covers are resized to this square side")
    score.add_argument("--batch-size", type=int, default=32)
    score.add_argument("--out", type=Path, required=True, help="parquet of scores, one row per cover")

    def run_train(args: argparse.Namespace) -> int:
        from icg_rec.rewards.commands import train as train_command  # imports torch: only when asked for

        return train_command(args)

    def run_score(args: argparse.Namespace) -> int:
        from icg_rec.rewards.commands import score as score_command

        return score_command(args)

    train.set_defaults(run=run_train)
    score.set_defaults(run=run_score)


def _add_generator(groups: argparse._SubParsersAction) -> None:
    from icg_rec.generation.commands import add_parser  # argparse only; torch loads when a command runs

    add_parser(groups)


def _add_generator_align(groups: argparse._SubParsersAction) -> None:
    """Adds `align` to the `generator` group (registered by `_add_generator`)."""
    generator = groups.choices["generator"]
    commands = next(a for a in generator._actions if isinstance(a, argparse._SubParsersAction))
    align = commands.add_parser("align", help="align a warm-up generator to rewards (DRaFT-K or DPO)")
    align.add_argument("--pipeline", type=Path, required=True, help="warm-up pipeline folder")
    align.add_argument("--out", type=Path, required=True, help="checkpoint/, pipeline/, history.json go here")
    align.add_argument("--method", choices=["draft", "dpo"], default="draft")
    align.add_argument("--dataset", choices=["simworld", "movielens"], default="simworld")
    align.add_argument("--data-dir", type=Path, default=None, help="MovieLens root (default: shared data)")
    align.add_argument("--items", type=int, default=None, help="align on a seeded sample of this many items")
    align.add_argument("--personalized", type=Path, default=None, help="saved PersonalizedRewardModel folder")
    align.add_argument("--relevance", type=Path, default=None, help="saved RelevanceModel folder")
    align.add_argument("--weights", default=None, help="e.g. 'aesthetic=0.5,relevance=1,personalized=2'")
    align.add_argument("--config", type=Path, default=None, help="TOML: [multi_reward], [align], [dpo]")
    align.add_argument("--resume", action="store_true", help="continue from --out/checkpoint")
    align.add_argument("--seed", type=int, default=0)

    def run(args: argparse.Namespace) -> int:
        from icg_rec.alignment.commands import run_align  # imports torch: only when asked for

        return run_align(args)

    align.set_defaults(run=run)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `icg-rec` console script."""
    args = _build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
