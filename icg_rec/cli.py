"""icg-rec: personalized item covers for your recommender system.

Generate a cover per item and user cohort with the ICG method, turn the covers into ranking features
for your TorchRec or LightGBM ranker, measure offline whether they lift it (with confidence intervals),
refresh the covers per cohort, and prepare the A/B test that would confirm the lift online.

Try `icg-rec quickstart` first: the whole loop on a synthetic world, on a CPU. `icg-rec doctor` checks
the installed stack. Each command's --help lists its options and their defaults.
"""

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


class HelpfulParser(argparse.ArgumentParser):
    """The parser of every icg-rec command: help shows each option's default, and a parse error is one
    line (`icg-rec ...: error: ...`) with exit status 2.

    Registration modules get it through `add_subparsers`/`add_parser`, which build parsers of the
    parent's class.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        shown = action.option_strings and not action.required and action.help is not argparse.SUPPRESS
        if (
            shown
            and action.default not in (None, False, argparse.SUPPRESS)
            and "%(default)" not in (action.help or "")
        ):
            action.help = f"{action.help or ''} (default: %(default)s)".strip()
        return action

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `icg-rec` argument parser, with every package's commands registered."""
    from icg_rec import __version__, doctor

    parser = HelpfulParser(prog="icg-rec", description=__doc__)
    parser.add_argument("--version", action="version", version=f"icg-rec {__version__}")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(groups)
    doctor.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; bad input raises (`SchemaError`, `CheckpointError`, ...): for callers and tests."""
    args = build_parser().parse_args(argv)
    library = logging.getLogger("icg_rec")  # icg_rec's progress lines on stderr; other libraries' stay quiet
    if not library.handlers:
        library.addHandler(logging.StreamHandler())
        library.setLevel(logging.INFO)
    return int(args.run(args) or 0)


def console_main(argv: list[str] | None = None) -> int:
    """Entry point of the `icg-rec` console script: a user's mistake is one line and exit status 2.

    Mistakes are what icg_rec refuses (its errors are ValueErrors: `SchemaError`, `CheckpointError`,
    `UnknownIdError`, bad values), files that are not there, and a missing optional package; anything
    else is a bug and keeps its traceback.
    """
    try:
        return main(argv)
    except (ValueError, FileNotFoundError, NotADirectoryError, ImportError) as error:
        print(f"icg-rec: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(console_main())
