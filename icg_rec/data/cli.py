"""`icg-rec data describe` and `icg-rec sim generate`."""

import argparse
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    """Registers the `data` and `sim` command groups."""
    from icg_rec.argtypes import seed

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
    describe.add_argument("--seed", type=seed, default=0, help="SimWorld seed")
    describe.set_defaults(run=_run_describe)

    sim = groups.add_parser("sim", help="synthetic world with a known click oracle").add_subparsers(
        dest="command", required=True
    )
    generate = sim.add_parser("generate", help="write a SimWorld: parquet frames, PNG covers, config.json")
    generate.add_argument("--out", type=Path, required=True, help="destination folder")
    generate.add_argument(
        "--config", type=Path, default=None, help="TOML with SimConfig fields (default: built-in)"
    )
    generate.add_argument("--seed", type=seed, default=None, help="overrides the config's seed")
    generate.set_defaults(run=_run_generate)


def _run_describe(args: argparse.Namespace) -> None:
    from icg_rec.data.describe import run_describe

    run_describe(args.dataset, args.data_dir, args.layout, args.json, args.seed)


def _run_generate(args: argparse.Namespace) -> None:
    from icg_rec.data.sim.export import run_generate  # imports torch: only when asked for

    run_generate(args.out, args.config, args.seed)
