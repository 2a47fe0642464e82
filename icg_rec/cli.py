"""The `icg-rec` command. It only composes the library; each group lives in its own function."""

import argparse
import sys


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icg-rec", description=__doc__)
    groups = parser.add_subparsers(dest="group", required=True)
    # Each command group registers here: one `_add_<group>(groups)` call per group.
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `icg-rec` console script."""
    args = _build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
