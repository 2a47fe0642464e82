"""Handlers of `icg-rec generator train / export-ip-adapter`: warm up on SimWorld or MovieLens posters, export the adapter."""

import argparse
from pathlib import Path

from icg_rec.io import config_from_dict, save_weights, write_json


def _load_toml(path: Path | None) -> dict:
    if path is None:
        return {}
    import tomllib

    with Path(path).open("rb") as fh:
        return tomllib.load(fh)


def train(args: argparse.Namespace) -> int:
    """Builds (or resumes) a generator and warms it up on reference covers; writes pipeline/, contact_sheet.png."""
    import torch  # heavy imports only when the command runs, so `icg-rec --help` stays fast

    from icg_rec.generation.backbones import build_pipeline, generator_config_from_dict
    from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer

    torch.manual_seed(args.seed)
    values = _load_toml(args.config)
    config = generator_config_from_dict(values.get("generator", {}), source=f"{args.config} [generator]")
    if args.diffusion is not None:
        config.diffusion = str(args.diffusion)
    if args.mllm is not None:
        config.prompter.backbone = str(args.mllm)
    warm = config_from_dict(
        WarmupConfig, {"seed": args.seed, **values.get("warmup", {})}, source=f"{args.config} [warmup]"
    )
    if args.steps is not None:
        warm.steps = args.steps
    warm.train_unet = config.diffusion is None  # a pretrained UNet stays frozen; the embedded one must learn
    titles, images = _reference_covers(args.dataset, args.data_dir, args.items, args.seed)
    trainer = WarmupTrainer(build_pipeline(config), warm, args.device, args.dtype)
    trainer.fit(titles, images, output_dir=args.out, resume=args.resume)
    write_json(Path(args.out) / "train_summary.json", {
        "dataset": args.dataset, "items": len(titles), "steps": trainer.step_,
        "loss_last50": sum(trainer.losses_[-50:]) / max(len(trainer.losses_[-50:]), 1),
        "generator": config, "warmup": warm,
    })  # fmt: skip
    print(f"warm-up done: {trainer.step_} steps, pipeline in {Path(args.out) / 'pipeline'}")
    return 0


def export_ip_adapter(args: argparse.Namespace) -> int:
    """Writes the adapter of a saved pipeline as an IP-Adapter-Plus safetensors file."""
    from icg_rec.generation.pipeline import ICGPipeline

    pipe = ICGPipeline.from_pretrained(args.pipeline)
    state = pipe.adapter.to_ip_adapter_state_dict(pipe.unet)
    flat = {f"{group}.{key}": value for group, part in state.items() for key, value in part.items()}
    save_weights(args.out, flat)
    print(
        f"IP-Adapter weights in {args.out} (load with pipe.load_ip_adapter(folder, subfolder='', weight_name=...))"
    )
    return 0


def _reference_covers(
    dataset: str, data_dir: Path | None, items: int | None, seed: int
) -> tuple[list[str], list]:
    """Titles and reference covers: SimWorld tensors, or MovieLens poster paths."""
    if dataset == "simworld":
        from icg_rec.data.sim import SimConfig, SimWorld

        n_items = items or 400  # a small user base: warm-up reads covers and titles only
        world = SimWorld.generate(
            SimConfig(n_users=100, n_items=n_items, impressions_per_user=min(10, n_items), seed=seed)
        )
        return world.dataset.items["title"].to_list(), list(world.covers)
    from icg_rec.data.movielens import load_movielens_with_posters

    frame = load_movielens_with_posters(data_dir).items.sort("item_id")
    if items is not None:
        frame = frame.sample(n=min(items, frame.height), seed=seed, shuffle=True)
    return frame["title"].to_list(), frame["image_path"].to_list()
