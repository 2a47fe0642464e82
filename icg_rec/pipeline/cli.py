"""`icg-rec quickstart`."""

import argparse
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    """Registers the `quickstart` command."""
    quick = groups.add_parser("quickstart", help="the whole ICG loop on SimWorld, with a report")
    quick.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    quick.add_argument("--config", type=Path, default=None, help="TOML with QuickstartConfig fields")
    quick.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    quick.set_defaults(run=_run_quickstart)


def _run_quickstart(args: argparse.Namespace) -> None:
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
