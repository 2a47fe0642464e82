"""`icg-rec rewards train` and `icg-rec rewards score`."""

import argparse
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    """Registers the `rewards` command group."""
    from icg_rec.argtypes import positive_int, seed

    rewards = groups.add_parser(
        "rewards", help="personalized, aesthetic and relevance rewards"
    ).add_subparsers(dest="command", required=True)
    train = rewards.add_parser("train", help="fit the personalized reward model or the relevance projection")
    train.add_argument("--model", choices=["personalized", "relevance"], default="personalized")
    train.add_argument("--dataset", choices=["movielens", "simworld"], default="movielens")
    train.add_argument("--data-dir", type=Path, default=None, help="MovieLens folder (default: shared data)")
    train.add_argument("--config", type=Path, default=None, help="TOML with PersonalizedConfig fields")
    train.add_argument("--sim-users", type=positive_int, default=2000, help="SimWorld users")
    train.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "icg_rec")
    train.add_argument("--seed", type=seed, default=0)
    train.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where it computes (icg_rec.device)")
    train.add_argument("--out", type=Path, required=True, help="model folder")
    score = rewards.add_parser("score", help="score covers: images folder or manifest in, parquet out")
    score.add_argument("--images", type=Path, default=None, help="folder of .jpg/.png covers")
    score.add_argument(
        "--manifest", type=Path, default=None, help="CSV/parquet: image_path [item_id user_id title]"
    )
    score.add_argument("--personalized", type=Path, default=None, help="folder of a saved personalized model")
    score.add_argument("--relevance", type=Path, default=None, help="folder of a saved relevance model")
    score.add_argument(
        "--image-size",
        type=positive_int,
        default=224,
        help="side the aesthetic and relevance rewards read covers at",
    )
    score.add_argument("--batch-size", type=positive_int, default=32)
    score.add_argument("--out", type=Path, required=True, help="parquet of scores, one row per cover")
    train.set_defaults(run=_run_train)
    score.set_defaults(run=_run_score)


def _run_train(args: argparse.Namespace) -> int:
    from icg_rec.rewards.commands import train  # imports torch: only when asked for

    return train(args)


def _run_score(args: argparse.Namespace) -> int:
    from icg_rec.rewards.commands import score

    return score(args)
