"""`icg-rec run`, `icg-rec stage <name>` and `icg-rec quickstart`."""

import argparse
from pathlib import Path

STAGES = ("prepare", "encode", "rewards", "warmup", "align", "cohorts", "refresh", "lift", "ope", "ab")
PRESETS = ("tiny", "cpu", "gpu", "quickstart")


def register(groups: argparse._SubParsersAction) -> None:
    """Registers `run`, `stage` and `quickstart`."""
    from icg_rec.argtypes import seed

    run = groups.add_parser("run", help="every stage on your items and log, into one run folder")
    _sources(run, required=True)
    run.add_argument(
        "--out", type=Path, required=True, help="run folder (stages already up to date are skipped)"
    )
    _settings(run, default="cpu")
    run.set_defaults(run=_run)

    stage = groups.add_parser("stage", help="one stage of a run folder, from its upstream stages' folders")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("--run", dest="folder", metavar="RUN", type=Path, required=True, help="the run folder")
    _sources(stage, required=False)
    _settings(stage, default="the run folder's config.toml, else cpu")
    stage.set_defaults(run=_stage)

    quick = groups.add_parser("quickstart", help="the whole ICG loop on SimWorld, judged by its oracle")
    quick.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    quick.add_argument(
        "--config", type=Path, default=None, help="TOML: a [world] table of SimConfig fields + RunConfig keys"
    )
    quick.add_argument("--seed", type=seed, default=None, help="overrides the run's seed (and the world's)")
    quick.set_defaults(run=_quickstart)


def _sources(parser: argparse.ArgumentParser, required: bool) -> None:
    what = "" if required else " (stage prepare)"
    parser.add_argument("--items", required=required, help=f"items table, CSV or parquet{what}")
    parser.add_argument("--interactions", required=required, help=f"click log, CSV or parquet{what}")
    parser.add_argument(
        "--columns", type=Path, default=None, help="TOML column mapping: [items], [interactions]"
    )


def _settings(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--preset", choices=PRESETS, default=None, help=f"run sizes (default: {default})")
    parser.add_argument("--config", type=Path, default=None, help="TOML of RunConfig keys over the preset")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default=None, help="overrides the config's device"
    )


def _config(args: argparse.Namespace, base_folder: Path | None = None):
    """The preset (or the run folder's config) with --config and --device applied."""
    from icg_rec.pipeline.presets import preset
    from icg_rec.pipeline.run import CONFIG_FILE, read_config

    if args.preset is None and base_folder is not None and (base_folder / CONFIG_FILE).is_file():
        config = read_config(base_folder)
    else:
        config = preset(args.preset or "cpu")
    if args.config is not None:
        config = config.with_toml(args.config)
    if args.device is not None:
        config.device = args.device
    return config


def _columns(args: argparse.Namespace):
    from icg_rec.data.contract import ColumnMapping

    return ColumnMapping.from_toml(args.columns) if args.columns else None


def _run(args: argparse.Namespace) -> None:
    from icg_rec.pipeline.run import run_pipeline

    _print(run_pipeline(args.items, args.interactions, args.out, _config(args), _columns(args)), args.out)


def _stage(args: argparse.Namespace) -> None:
    from icg_rec.pipeline.prepare import Sources
    from icg_rec.pipeline.run import run_one

    sources = None
    if args.items is not None or args.interactions is not None:
        if args.name != "prepare" or args.items is None or args.interactions is None:
            raise SystemExit("--items and --interactions go together, with `icg-rec stage prepare` only")
        sources = Sources.read(args.items, args.interactions, _columns(args))
    changed = (
        args.preset is not None or args.config is not None or not (args.folder / "config.toml").is_file()
    )
    config = _config(args, args.folder) if changed else None
    _print(run_one(args.name, args.folder, sources, config, args.device), args.folder)


def _quickstart(args: argparse.Namespace) -> None:
    from icg_rec.quickstart import QuickstartConfig, run_quickstart

    config = QuickstartConfig.from_toml(args.config) if args.config else QuickstartConfig()
    if args.seed is not None:
        config.run.seed = args.seed
    result = run_quickstart(args.out, config)
    oracle = result["oracle_ctr"]
    print(
        f"oracle CTR original {oracle['original']:.4f}, generic {oracle['generic']:.4f}, "
        f"personalized {oracle['aligned_personalized']:.4f}; report: {args.out}/report.md "
        f"({result['seconds']:.0f} s)"
    )


def _print(summary: dict, out: Path) -> None:
    parts = [f"{name} {entry['status']}" for name, entry in summary["stages"].items()]
    if covers := summary.get("covers"):
        parts.append(f"covers: {covers['generated']} generated, {covers['cached']} cached")
    if lift := summary.get("lift", {}).get("personalized_cover"):
        parts.append(
            f"personalized cover AUC delta {lift['auc_delta']:+.4f} [{lift['ci95'][0]:+.4f}, {lift['ci95'][1]:+.4f}]"
        )
    print("; ".join(parts) + f"; report: {out}/report.md")
