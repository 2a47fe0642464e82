"""Lift of content features on a ranker: `python -m eval.lift ...` is `icg-rec lift ...` (the harness in
icg_rec.ranking.harness, installed with the package).

`python -m eval.lift --covers RUN [--cohort-arm] [--cohorts-source given] --out OUT` measures the cover arms
of a run folder (the quickstart's, or any `icg-rec run`): the pipeline's `lift` stage body on RUN's
stages, with these settings, written to OUT instead of RUN/lift. Arms: `no_cover` (ids + click rates),
`original_cover`, `personalized_cover` (the cover refreshed for the user's cohort), each cover as its
image embedding and its out-of-fold personalized reward score; `--cohort-arm` adds `cohort_id` (ids +
rates + the user's cohort id). Training rows' cohorts are refitted out-of-fold; `--cohorts-source given`
takes RUN's cohorts as they are (fitted on all training clicks: in-sample).
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from icg_rec.cli import main as icg_rec


def covers(argv: list[str]) -> int:
    """The `lift` stage body on RUN's finished stages, into --out."""
    from icg_rec.io import read_json
    from icg_rec.pipeline.run import finished, read_config

    parser = argparse.ArgumentParser(prog="python -m eval.lift --covers", description=__doc__)
    parser.add_argument("--covers", type=Path, required=True, help="a run folder (quickstart or icg-rec run)")
    parser.add_argument("--cohort-arm", action="store_true", help="add the arm ids + rates + cohort id")
    parser.add_argument("--cohorts-source", choices=["out_of_fold", "given"], default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="ranker seeds (default: RUN's)")
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default: RUN's)")
    parser.add_argument("--out", type=Path, default=Path("out/lift_covers"))
    args = parser.parse_args(argv)
    config = read_config(args.covers).stage("lift")
    arms, lift = config.cover_arms, config.cover_arms.lift
    lift = replace(lift, seeds=args.seeds or lift.seeds, n_boot=args.n_boot or lift.n_boot)
    arms = replace(arms, cohorts=args.cohorts_source or arms.cohorts, lift=lift)
    config = replace(config, cover_arms=arms, cohort_arm=args.cohort_arm)
    from icg_rec.pipeline.lift import lift as lift_stage

    args.out.mkdir(parents=True, exist_ok=True)
    stages = ("prepare", "encode", "rewards", "cohorts", "refresh")
    lift_stage(config, *[finished(name, args.covers) for name in stages], args.out)
    summary = read_json(args.out / "lift.json")  # OUT is no stage folder: no stage.json to verify against
    for name, t in summary["lift"].items():
        print(f"{name}: AUC {summary['arms'][name]['auc']:.4f}, delta {t['auc_delta']:+.4f} "
              f"[{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}] p={t['p_value']:.3f}")  # fmt: skip
    print(f"wrote {args.out / 'lift.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return covers(argv) if "--covers" in argv else icg_rec(["lift", *argv])


if __name__ == "__main__":
    sys.exit(main())
