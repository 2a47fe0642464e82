"""What `icg-rec generator align` does (cli.py only parses the arguments).

Reward weights come from `--weights name=w,...` or from the `[multi_reward]` table of `--config`; the
trainer settings from its `[align]` (DRaFT) or `[dpo]` table, e.g.

    [multi_reward]
    weights = { aesthetic = 0.5, relevance = 1.0, personalized = 2.0 }
    [align]
    steps = 200
    grad_steps = 2
"""

import argparse
import tomllib
from pathlib import Path

from icg_rec.io import config_from_dict, write_json


def parse_weights(text: str) -> dict[str, float]:
    """`"aesthetic=0.5,personalized=2"` -> {"aesthetic": 0.5, "personalized": 2.0}."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(
                f"--weights entry {part!r} is not name=number (e.g. 'aesthetic=0.5,personalized=2')"
            )
    return weights


def run_align(args: argparse.Namespace) -> int:
    """Aligns a warm-up pipeline with the chosen rewards and writes pipeline/, checkpoint/, history.json."""
    import torch

    from icg_rec.alignment import AlignConfig, Audience, DPOAligner, DPOConfig, RewardAligner
    from icg_rec.alignment.data import personalized_user_vectors
    from icg_rec.device import resolve_device
    from icg_rec.encoders import load_image_encoder, load_text_encoder
    from icg_rec.generation.pipeline import ICGPipeline
    from icg_rec.rewards.aesthetic import AestheticReward
    from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig
    from icg_rec.rewards.personalized import PersonalizedRewardModel
    from icg_rec.rewards.relevance import RelevanceModel, RelevanceReward

    values = {}
    if args.config is not None:
        with Path(args.config).open("rb") as fh:
            values = tomllib.load(fh)
    multi = config_from_dict(
        MultiRewardConfig, values.get("multi_reward", {}), source=f"{args.config} [multi_reward]"
    )
    if args.weights:
        multi.weights = parse_weights(args.weights)
    if not multi.weights:
        raise ValueError("no reward weights: pass --weights name=w,... or a [multi_reward] table in --config")
    device = resolve_device(args.device)  # the rewards compute where the covers are made
    image_encoder, text_encoder = load_image_encoder(None).to(device), load_text_encoder(None)
    rewards: dict = {"aesthetic": AestheticReward()}
    personal = None
    if args.personalized is not None:
        personal = PersonalizedRewardModel.load(args.personalized, image_encoder, args.device)
        rewards["personalized"] = personal
    if args.relevance is not None:
        rewards["relevance"] = RelevanceReward(
            RelevanceModel.load(args.relevance, args.device), text_encoder, image_encoder
        )
    reward = MultiReward(rewards, multi)

    torch.manual_seed(args.seed)
    pipe = ICGPipeline.from_pretrained(args.pipeline)
    items = _items(args.dataset, args.data_dir, args.items, args.seed)
    if personal is not None:
        users = torch.as_tensor(personal.user_ids_)
        audience = Audience(users, personalized_user_vectors(personal, users))
    else:  # no personalized reward: covers for the generic user
        audience = Audience(torch.tensor([-1]), torch.zeros(1, pipe.refiner.config.user_dim))
    if args.method == "dpo":
        config = config_from_dict(
            DPOConfig, {"seed": args.seed, **values.get("dpo", {})}, source=f"{args.config} [dpo]"
        )
        aligner = DPOAligner(pipe, reward, config, args.device, args.dtype)
    else:
        config = config_from_dict(
            AlignConfig, {"seed": args.seed, **values.get("align", {})}, source=f"{args.config} [align]"
        )
        aligner = RewardAligner(pipe, reward, config, args.device, args.dtype)
    aligner.fit(items, audience, args.out, resume=args.resume)
    write_json(Path(args.out) / "history.json", aligner.history_)
    print(
        f"alignment done: {aligner.step_} {'rounds' if args.method == 'dpo' else 'steps'}, pipeline in {Path(args.out) / 'pipeline'}"
    )
    return 0


def _items(dataset: str, data_dir: Path | None, count: int | None, seed: int):
    """Items to align: SimWorld covers, or MovieLens posters (optionally a seeded sample of `count`)."""
    import torch

    from icg_rec.alignment import ItemSet

    if dataset == "simworld":
        from icg_rec.data.sim import SimConfig, SimWorld

        world = SimWorld.generate(SimConfig(seed=seed))
        frame, images = world.dataset.items, list(world.covers)
    else:
        from icg_rec.data.movielens import load_movielens_with_posters

        frame = load_movielens_with_posters(data_dir).items.sort("item_id")
        images = None
    if count is not None:
        frame = frame.sample(n=min(count, frame.height), seed=seed, shuffle=True)
        images = None if images is None else [images[i] for i in frame["item_id"].to_list()]
    if images is None:
        images = frame["image_path"].to_list()
    return ItemSet(frame["title"].to_list(), images, torch.as_tensor(frame["item_id"].to_numpy().copy()))
