"""`icg-rec generator train`, `generator export-ip-adapter` and (registered by alignment) `generator align`."""

import argparse
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    """Registers the `generator` command group, with `align` from `icg_rec.alignment.cli`."""
    from icg_rec.alignment.cli import add_align_command
    from icg_rec.argtypes import positive_int, seed

    generator = groups.add_parser("generator", help="ICG cover generator").add_subparsers(
        dest="command", required=True
    )
    train = generator.add_parser("train", help="warm up the generator on reference covers (denoising loss)")
    train.add_argument("--dataset", choices=["simworld", "movielens"], default="simworld")
    train.add_argument("--data-dir", type=Path, default=None, help="MovieLens root (default: shared data)")
    train.add_argument(
        "--items", type=positive_int, default=None, help="SimWorld items / MovieLens poster subset size"
    )
    train.add_argument(
        "--config", type=Path, default=None, help="TOML with [generator] (+[generator.prompter]) and [warmup]"
    )
    train.add_argument(
        "--diffusion", type=Path, default=None, help="local SD-1.5-layout folder (default: embedded UNet)"
    )
    train.add_argument(
        "--mllm", type=Path, default=None, help="local HF VLM / causal LM folder (default: embedded)"
    )
    train.add_argument("--steps", type=positive_int, default=None, help="overrides [warmup] steps")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    train.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where it computes (icg_rec.device)")
    train.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="bfloat16: autocast"
    )
    train.add_argument("--seed", type=seed, default=0)
    train.add_argument(
        "--out", type=Path, required=True, help="run folder: checkpoint/, pipeline/, contact_sheet.png"
    )
    train.set_defaults(run=_run_train)
    export = generator.add_parser(
        "export-ip-adapter", help="write a saved pipeline's adapter as IP-Adapter weights"
    )
    export.add_argument(
        "--pipeline", type=Path, required=True, help="folder written by ICGPipeline.save_pretrained"
    )
    export.add_argument("--out", type=Path, required=True, help="destination .safetensors file")
    export.set_defaults(run=_run_export)
    add_align_command(generator)


def _run_train(args: argparse.Namespace) -> int:
    from icg_rec.generation.commands import train  # imports torch: only when asked for

    return train(args)


def _run_export(args: argparse.Namespace) -> int:
    from icg_rec.generation.commands import export_ip_adapter

    return export_ip_adapter(args)
