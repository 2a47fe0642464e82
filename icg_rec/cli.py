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
    return parser


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `icg-rec` console script."""
    args = _build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
