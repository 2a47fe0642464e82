"""What `icg-rec rewards train` and `icg-rec rewards score` do (cli.py only parses the arguments)."""

import argparse
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from icg_rec.data.images import load_image
from icg_rec.encoders.base import read_pixels
from icg_rec.errors import SchemaError
from icg_rec.rewards.aesthetic import AestheticReward
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel
from icg_rec.rewards.relevance import RelevanceModel, RelevanceReward

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def train(args: argparse.Namespace) -> int:
    """Fits the personalized reward model or the relevance projection on a dataset and saves it to args.out."""
    from icg_rec.encoders import EfficientNetLite0Encoder, EmbeddingCache, MiniLMTextEncoder, embed_items
    from icg_rec.encoders.items import item_texts
    from icg_rec.io import load_toml_config

    config = load_toml_config(PersonalizedConfig, args.config) if args.config else PersonalizedConfig()
    encoder = EfficientNetLite0Encoder().freeze()
    if args.dataset == "movielens":
        from icg_rec.data.movielens import load_movielens_with_posters

        dataset = load_movielens_with_posters(args.data_dir)
        text, image = embed_items(
            dataset.items, MiniLMTextEncoder(), encoder, EmbeddingCache(args.cache_dir), True
        )
        pixels = None
    else:
        from icg_rec.data.sim import SimConfig, SimWorld

        world = SimWorld.generate(SimConfig(n_users=args.sim_users, seed=args.seed))
        dataset = world.dataset
        text = MiniLMTextEncoder().encode(item_texts(dataset.items))
        with torch.no_grad():
            image = torch.cat(
                [encoder(world.covers[s : s + 64]) for s in range(0, len(world.covers), 64)]
            ).numpy()
        pixels = world.covers.numpy()
    item_ids = dataset.items["item_id"].to_numpy()
    if args.model == "relevance":
        RelevanceModel(device=args.device).fit(text, image, seed=args.seed, progress=True).save(args.out)
    else:
        if config.cover_tower == "cnn" and pixels is None:
            raise ValueError("the cnn cover tower is for pixel covers (SimWorld); MovieLens uses 'embedding'")
        feats = pixels if config.cover_tower == "cnn" else image
        covers = CoverInputs(item_ids, feats, titles=text if args.dataset == "movielens" else None)
        model = PersonalizedRewardModel(config, image_encoder=encoder, device=args.device)
        model.fit(dataset.interactions, covers, seed=args.seed, progress=True).save(args.out)
    print(f"wrote {args.model} reward model to {args.out}")
    return 0


def read_manifest(images: Path | None, manifest: Path | None) -> pl.DataFrame:
    """The rows to score: every image file of a folder, or a CSV / parquet manifest with image_path.

    Manifest columns: image_path (required); item_id, user_id (GENERIC_USER = -1: the generic user), title
    (optional).
    """
    if (images is None) == (manifest is None):
        raise ValueError("give exactly one of --images FOLDER or --manifest FILE")
    if images is not None:
        if not images.is_dir():
            raise SchemaError(f"--images {images} is not a folder")
        paths = sorted(str(p) for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SchemaError(f"--images {images} holds no {IMAGE_SUFFIXES} files")
        return pl.DataFrame({"image_path": paths})
    if not manifest.is_file():
        raise SchemaError(f"no manifest file at {manifest}")
    frame = pl.read_parquet(manifest) if manifest.suffix == ".parquet" else pl.read_csv(manifest)
    if "image_path" not in frame.columns:
        raise SchemaError(f"manifest {manifest} has no image_path column; got {frame.columns}")
    return frame


def score(args: argparse.Namespace) -> int:
    """Scores covers with the aesthetic reward (always) and the personalized / relevance models given."""
    frame = read_manifest(args.images, args.manifest)
    rewards = {"aesthetic": AestheticReward()}
    if args.personalized or args.relevance:
        from icg_rec.encoders import EfficientNetLite0Encoder, MiniLMTextEncoder

        encoder = EfficientNetLite0Encoder().freeze()
        if args.personalized:
            rewards["personalized"] = PersonalizedRewardModel.load(args.personalized, image_encoder=encoder)
        if args.relevance:
            if "title" not in frame.columns:
                raise SchemaError("--relevance needs a manifest with a title column")
            rewards["relevance"] = RelevanceReward(
                RelevanceModel.load(args.relevance), MiniLMTextEncoder(), encoder
            )
    # every reward reads the covers at its own input size, through the pixels path its model was fitted on
    sizes = {k: getattr(reward, "input_size", args.image_size) for k, reward in rewards.items()}
    columns: dict[str, list[float]] = {k: [] for k in rewards}
    for s in tqdm(range(0, frame.height, args.batch_size), desc="score covers"):
        rows = frame.slice(s, args.batch_size)
        images = [load_image(p) for p in rows["image_path"]]
        for k, reward in rewards.items():
            inputs = RewardInputs(
                images=torch.cat([read_pixels(image, sizes[k]) for image in images]),  # (b, 3, S, S)
                item_ids=torch.tensor(rows["item_id"].to_numpy()) if "item_id" in rows.columns else None,
                user_ids=torch.tensor(rows["user_id"].to_numpy()) if "user_id" in rows.columns else None,
                titles=rows["title"].to_list() if "title" in rows.columns else None,
            )
            with torch.no_grad():
                columns[k].extend(reward(inputs).double().tolist())
    out = frame.with_columns([pl.Series(k, np.asarray(v)) for k, v in columns.items()])
    from icg_rec.io import atomic_write

    atomic_write(args.out, lambda tmp: out.write_parquet(tmp))
    print(f"wrote {out.height} scored covers to {args.out}")
    return 0
