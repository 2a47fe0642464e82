"""The content-feature lift harness behind `icg-rec lift`: do item text / image features lift a ranker?

Baseline and treatment arms are FeatureSpecs over one feature frame (icg_rec.ranking.lift). MovieLens
arms: `base` (ids + out-of-fold id click rates + PCA of the title/genre text embedding), `poster`
(+ PCA of the poster embedding), `poster_taste` (+ poster taste cosine), `text_taste` (+ text taste
cosine). SimWorld arms: `ids`, `cover` (+ PCA of the cover embedding), `cover_taste` (+ cover taste
cosine). The cover arms of a run (no cover, original cover, the user's cohort cover) are the `lift`
stage of the pipeline: `icg-rec stage lift --run RUN`.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from icg_rec.ranking.base import FeatureSpec
from icg_rec.ranking.lift import LiftConfig, LiftResult

RANKERS = ("lightgbm", "torchrec")
USER = ["user_id_ctr", "user_id_log_n"]
ITEM = ["item_id_ctr", "item_id_log_n"]
CONTENT = {
    "movielens": {  # name -> (extra dense columns, extra embedding columns) over the baseline
        "base": ([], ["text_pca"]),
        "poster": ([], ["text_pca", "poster_pca"]),
        "poster_taste": (["poster_taste"], ["text_pca"]),
        "text_taste": (["text_taste"], ["text_pca"]),
    },
    "simworld": {
        "ids": ([], []),
        "cover": ([], ["cover_pca"]),
        "cover_taste": (["cover_taste"], []),
    },
}


@dataclass
class HarnessConfig:
    dataset: str = "movielens"  # "movielens" (ml-latest-small with posters) or "simworld"
    protocol: str = "warm"  # "warm": each user's last 20% of rows; "cold": 20% of items held out
    arms: list[str] = field(default_factory=list)  # arms to run, baseline first (empty: all)
    ranker: str = "lightgbm"  # "lightgbm" or "torchrec"
    lift: LiftConfig = field(default_factory=LiftConfig)  # seeds and bootstrap (baseline: the first arm)
    text_pca: int = 32  # PCA width of the text embedding
    image_pca: int = 16  # PCA width of the poster / cover embedding
    sim_users: int = 2000  # SimWorld users
    sim_items: int = 400  # SimWorld items
    sim_impressions: int = 40  # impressions per SimWorld user
    sim_seed: int = 0  # SimWorld seed
    data_dir: str | None = None  # MovieLens folder (None: the shared data)
    cache_dir: str = "~/.cache/icg_rec"  # embedding cache


def arms_for(dataset: str, protocol: str) -> dict[str, FeatureSpec]:
    """The arms of a dataset under a protocol; the first is the baseline.

    Warm: user and item ids (LightGBM categorical) plus their out-of-fold click rates and counts.
    Cold: user side only. Every test item is unseen, so item ids and item statistics carry nothing
    at test time, and a model trained on them leans on them instead of content (measured on the
    MovieLens cold split: ids + item stats + text 0.735 AUC, user side + text 0.748).
    """
    sparse, dense = (["user_id", "item_id"], USER + ITEM) if protocol == "warm" else (["user_id"], USER)
    return {
        name: FeatureSpec(sparse=sparse, dense=dense + extra_dense, embeddings=embeddings)
        for name, (extra_dense, embeddings) in CONTENT[dataset].items()
    }


def ranker_class(name: str):
    """The Ranker class of a name ("lightgbm" or "torchrec"); called without arguments it builds a fresh ranker."""
    if name not in RANKERS:
        raise ValueError(f"ranker must be one of {RANKERS}, got {name!r}")
    if name == "lightgbm":
        from icg_rec.ranking.lightgbm_ranker import LightGBMRanker

        return LightGBMRanker
    from icg_rec.ranking.torchrec_ranker import TorchRecRanker

    return TorchRecRanker


def run_harness(config: HarnessConfig, out: str | Path) -> tuple[LiftResult, Path]:
    """Builds the dataset's content features, runs every arm on every seed, writes the lift report.

    Args:
        config: dataset, protocol, arms, ranker and seeds.
        out: the report folder (lift.json, report.md, plots).

    Returns:
        The result and the path of lift.json.
    """
    from dataclasses import replace

    from icg_rec.data.splits import cold_item_split, per_user_temporal_split
    from icg_rec.errors import SchemaError
    from icg_rec.ranking.lift import build_lift_frames, run_lift, write_lift_report

    if config.dataset not in CONTENT:
        raise SchemaError(f"dataset must be one of {sorted(CONTENT)}, got {config.dataset!r}")
    arms = arms_for(config.dataset, config.protocol)
    if unknown := [n for n in config.arms if n not in arms]:
        raise SchemaError(f"unknown arm(s) {unknown} for {config.dataset}; known: {sorted(arms)}")
    arms = {n: arms[n] for n in config.arms} if config.arms else arms
    dataset, vectors = (_movielens if config.dataset == "movielens" else _simworld)(config)
    split = per_user_temporal_split if config.protocol == "warm" else cold_item_split
    train, test = build_lift_frames(*split(dataset.interactions), vectors, seed=0)
    lift = replace(config.lift, baseline=next(iter(arms)))
    result = run_lift(train, test, arms, ranker_class(config.ranker), lift)
    meta = {
        "dataset": dataset.name,
        "ranker": config.ranker,
        "protocol": config.protocol,
        "seeds": lift.seeds,
    }
    return result, write_lift_report(result, out, meta)


def _movielens(config: HarnessConfig):
    from icg_rec.data.movielens import load_movielens_with_posters
    from icg_rec.data.paths import movielens_dir
    from icg_rec.encoders import EfficientNetLite0Encoder, EmbeddingCache, MiniLMTextEncoder, embed_items
    from icg_rec.ranking.lift import ItemVectors

    dataset = load_movielens_with_posters(Path(config.data_dir) if config.data_dir else movielens_dir())
    items = dataset.items.sort("item_id")
    ids = items["item_id"].to_numpy()
    cache = EmbeddingCache(Path(config.cache_dir).expanduser())
    text, poster = embed_items(items, MiniLMTextEncoder(), EfficientNetLite0Encoder(), cache, progress=True)
    return dataset, [
        ItemVectors("text", ids, text, config.text_pca),
        ItemVectors("poster", ids, poster, config.image_pca),
    ]


def _simworld(config: HarnessConfig):
    import torch
    from PIL import Image

    from icg_rec.data.sim import SimConfig, SimWorld
    from icg_rec.encoders import EfficientNetLite0Encoder, EmbeddingCache, encode_cached
    from icg_rec.ranking.lift import ItemVectors

    world = SimWorld.generate(
        SimConfig(
            n_users=config.sim_users,
            n_items=config.sim_items,
            impressions_per_user=config.sim_impressions,
            seed=config.sim_seed,
        )
    )
    pixels = (world.covers * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (n_items, S, S, 3)
    covers = [Image.fromarray(tile) for tile in pixels]  # what save_covers writes, kept in memory
    cache = EmbeddingCache(Path(config.cache_dir).expanduser())
    cover = encode_cached(EfficientNetLite0Encoder(), covers, cache, progress=True)
    ids = np.arange(len(covers), dtype=np.int64)
    return world.dataset, [ItemVectors("cover", ids, cover, config.image_pca)]
