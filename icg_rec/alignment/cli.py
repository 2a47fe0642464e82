"""`icg-rec generator align`: added to the `generator` group that `icg_rec.generation.cli` registers."""

import argparse
from pathlib import Path


def add_align_command(generator: argparse._SubParsersAction) -> None:
    """Adds `align` to the `generator` group's subcommands.

    Args:
        generator: the subparsers of the `generator` group.
    """
    from icg_rec.argtypes import positive_int, seed

    align = generator.add_parser("align", help="align a warm-up generator to rewards (DRaFT-K or DPO)")
    align.add_argument("--pipeline", type=Path, required=True, help="warm-up pipeline folder")
    align.add_argument("--out", type=Path, required=True, help="checkpoint/, pipeline/, history.json go here")
    align.add_argument("--method", choices=["draft", "dpo"], default="draft")
    align.add_argument("--dataset", choices=["simworld", "movielens"], default="simworld")
    align.add_argument("--data-dir", type=Path, default=None, help="MovieLens root (default: shared data)")
    align.add_argument(
        "--items", type=positive_int, default=None, help="align on a seeded sample of this many items"
    )
    align.add_argument("--personalized", type=Path, default=None, help="saved PersonalizedRewardModel folder")
    align.add_argument("--relevance", type=Path, default=None, help="saved RelevanceModel folder")
    align.add_argument("--weights", default=None, help="e.g. 'aesthetic=0.5,relevance=1,personalized=2'")
    align.add_argument("--config", type=Path, default=None, help="TOML: [multi_reward], [align], [dpo]")
    align.add_argument("--resume", action="store_true", help="continue from --out/checkpoint")
    align.add_argument("--seed", type=seed, default=0)
    align.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where it computes (icg_rec.device)")
    align.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="bfloat16: autocast"
    )
    align.set_defaults(run=_run_align)


def _run_align(args: argparse.Namespace) -> int:
    from icg_rec.alignment.commands import run_align  # imports torch: only when asked for

    return run_align(args)
