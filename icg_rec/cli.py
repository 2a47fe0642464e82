"""The `icg-rec` command. Each package registers its own commands in `icg_rec/<package>/cli.py`."""

import argparse
import importlib
import logging
import sys

# One registration module per package; each has `register(subparsers)` and imports nothing heavy at
# module level (torch, polars, ... load inside the functions that run a command).
COMMANDS = (
    "icg_rec.data.cli",  # data describe, sim generate
    "icg_rec.ranking.cli",  # ranker fit
    "icg_rec.rewards.cli",  # rewards train / score
    "icg_rec.generation.cli",  # generator train / export-ip-adapter / align
    "icg_rec.cohorts.cli",  # cohorts fit, refresh
    "icg_rec.experiment.cli",  # ab plan
    "icg_rec.ope.cli",  # ope
    "icg_rec.pipeline.cli",  # quickstart
)


def build_parser() -> argparse.ArgumentParser:
    """The `icg-rec` argument parser, with every package's commands registered."""
    from icg_rec import __version__, doctor

    parser = argparse.ArgumentParser(prog="icg-rec", description=__doc__)
    parser.add_argument("--version", action="version", version=f"icg-rec {__version__}")
    groups = parser.add_subparsers(dest="group", required=True)
    for module in COMMANDS:
        importlib.import_module(module).register(groups)
    doctor.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `icg-rec` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the library's progress lines, on stderr
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
