"""`icg-rec ope`: files in, ope.json + report.md out. Like cli.py, this module only composes."""

import argparse
from pathlib import Path

import numpy as np
import polars as pl
import torch

from icg_rec.data.contract import ColumnMapping, read_interactions, read_items
from icg_rec.data.images import load_image
from icg_rec.errors import SchemaError
from icg_rec.ope.covers import candidates_from_refresh
from icg_rec.ope.evaluate import OPEConfig, evaluate_policies, require_propensities, write_ope_report
from icg_rec.ope.policies import CoverCandidates, parse_policy


def load_covers(paths: list[str], size: int | None) -> torch.Tensor:
    """Reads covers as (n, 3, S, S) floats in [0, 1], resized to `size` (default: the first cover's width)."""
    images = [load_image(p) for p in paths]
    side = size or images[0].width
    arrays = [np.asarray(im.resize((side, side)), dtype=np.float32) / 255.0 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (n, 3, S, S)


def read_candidates(args: argparse.Namespace, mapping: ColumnMapping | None) -> CoverCandidates:
    """Candidates from --candidates (a table with image_path) or from --refresh + --items."""
    if (args.candidates is None) == (args.refresh is None):
        raise SchemaError(
            "give the candidate covers either as --candidates TABLE or as --refresh FOLDER --items ITEMS"
        )
    if args.candidates is not None:
        path = Path(args.candidates)
        table = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
        if "image_path" not in table.columns:
            raise SchemaError(
                f"{path} has no image_path column: the outcome model reads every candidate's pixels"
            )
        paths = [p if Path(p).is_absolute() else str(path.parent / p) for p in table["image_path"].to_list()]
        return CoverCandidates.from_table(table, load_covers(paths, args.image_size))
    if args.items is None:
        raise SchemaError("--refresh needs --items: the items table holds the original covers (image_path)")
    items = read_items(args.items, mapping).sort("item_id")
    if (n := items["image_path"].null_count()) > 0:
        raise SchemaError(f"{n} item(s) have no original cover (image_path): every item needs one")
    originals = load_covers(items["image_path"].to_list(), args.image_size)
    return candidates_from_refresh(items["item_id"].to_numpy(), originals, args.refresh)


def run_ope(args: argparse.Namespace) -> int:
    """Estimates the target policies' CTR from the log and writes the report."""
    mapping = ColumnMapping.from_toml(args.columns) if args.columns else None
    log = read_interactions(args.log, mapping)
    require_propensities(log)  # before any cover is read: a log without propensities is refused first
    policies = [parse_policy(spec) for spec in args.policies]
    candidates = read_candidates(args, mapping)
    user_cohorts = reward = None
    if args.cohorts is not None:
        from icg_rec.cohorts.clustering import UserCohorts

        cohorts = UserCohorts.load(args.cohorts)
        user_cohorts = pl.DataFrame({"user_id": cohorts.user_ids_, "cohort_id": cohorts.labels_})
    if args.reward is not None:
        from icg_rec.rewards.personalized import PersonalizedRewardModel

        reward = PersonalizedRewardModel.load(args.reward)
    config = OPEConfig(clip=args.clip, n_boot=args.n_boot, seed=args.seed)
    if args.estimators is not None:
        config.estimators = list(args.estimators)
    report = evaluate_policies(log, candidates, policies, config, user_cohorts, reward)
    path = write_ope_report(report, args.out, {"log": str(args.log), "policies": args.policies})
    for spec, p in report.policies.items():
        est = "dr" if "dr" in p.estimates else next(iter(p.estimates))
        lo, hi = p.ci95[est]
        print(
            f"{spec}: {est} {p.estimates[est]:.4f} [{lo:.4f}, {hi:.4f}], ESS share {p.diagnostics.ess_share:.2f}"
        )
    print(f"report: {path}")
    return 0
