"""Tiny artifacts of every kind the library writes, made from fixed seeds (shared by tests and kill scripts).

Each `save_<kind>(folder, version)` writes one artifact; two versions differ in every data file, so a
file of one copied into the other is a "mixed versions" checkpoint. Each `load_<kind>(folder)` reads it
back the way a user would.
"""

import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

TITLES = ["crimson night", "blue day", "a b", "night song"]


def ranker_frame(n: int = 300, seed: int = 0) -> pl.DataFrame:
    """Clicks driven by an embedding column and the user's parity: ids, a dense and a vector column."""
    rng = np.random.default_rng(seed)
    vec = rng.normal(size=(n, 3)).astype(np.float32)
    users = rng.integers(0, 10, n)
    logit = vec[:, 0] * 2 + (users % 2) - 0.5
    return pl.DataFrame(
        {
            "user_id": users,
            "item_id": rng.integers(100, 130, n),
            "price": rng.random(n),
            "vec": pl.Series(vec, dtype=pl.Array(pl.Float32, 3)),
            "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64),
        }
    )


def _spec():
    from icg_rec.ranking.base import FeatureSpec

    return FeatureSpec(sparse=["user_id", "item_id"], dense=["price"], embeddings=["vec"])


def save_lightgbm(folder: Path, version: int = 0) -> None:
    from icg_rec.ranking.lightgbm_ranker import LightGBMConfig, LightGBMRanker

    config = LightGBMConfig(
        n_estimators=10 + version, min_child_samples=5, min_data_per_group=5, num_threads=1
    )
    LightGBMRanker(config).fit(ranker_frame(seed=version), _spec()).save(folder)


def load_lightgbm(folder: Path) -> np.ndarray:
    from icg_rec.ranking.lightgbm_ranker import LightGBMRanker

    return LightGBMRanker.load(folder).predict(ranker_frame())


def _store(version: int):
    from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore, StoreConfig

    rng = np.random.default_rng(10 + version)
    config = StoreConfig(seed=version)
    return CoverEmbeddingStore(config).build(
        np.arange(100, 130),
        np.full(30, DEFAULT_COHORT),
        rng.normal(size=(30, 4 + version)).astype(np.float32),
    )


def save_torchrec(folder: Path, version: int = 0) -> None:
    from icg_rec.ranking.dlrm import TorchRecConfig
    from icg_rec.ranking.torchrec_ranker import TorchRecRanker

    config = TorchRecConfig(epochs=1 + version, batch_size=100, progress=False, cover_features=True)
    cohorts = pl.DataFrame({"user_id": [0, 1], "cohort_id": [3, 3 + version]})
    frame = ranker_frame(seed=version).drop("vec")
    spec = _spec()
    spec.embeddings = []
    TorchRecRanker(config, cover_store=_store(version), user_cohorts=cohorts).fit(
        frame, spec, seed=version
    ).save(folder)


def load_torchrec(folder: Path) -> np.ndarray:
    from icg_rec.ranking.torchrec_ranker import TorchRecRanker

    return TorchRecRanker.load(folder).predict(ranker_frame().drop("vec"))


def save_store(folder: Path, version: int = 0) -> None:
    _store(version).save(folder)


def load_store(folder: Path) -> np.ndarray:
    from icg_rec.features.store import CoverEmbeddingStore

    return CoverEmbeddingStore.load(folder).vectors_


def save_provider(folder: Path, version: int = 0) -> None:
    from icg_rec.features.provider import FeatureProvider

    cohorts = pl.DataFrame({"user_id": [0, 1], "cohort_id": [3, 3 + version]})
    provider = FeatureProvider(["user_id", "item_id"], ["price"], [], "label", _store(version), cohorts)
    provider.fit(ranker_frame(seed=version).drop("vec")).save(folder)


def load_provider(folder: Path) -> dict:
    from icg_rec.features.provider import FeatureProvider

    return FeatureProvider.load(folder).vocab_


def save_relevance(folder: Path, version: int = 0) -> None:
    from icg_rec.rewards.relevance import RelevanceConfig, RelevanceModel

    rng = np.random.default_rng(20 + version)
    text, image = rng.normal(size=(40, 5)).astype(np.float32), rng.normal(size=(40, 6)).astype(np.float32)
    RelevanceModel(RelevanceConfig(shared_dim=4 + version, epochs=1, batch_size=16)).fit(
        text, image, seed=version
    ).save(folder)


def load_relevance(folder: Path) -> object:
    from icg_rec.rewards.relevance import RelevanceModel

    return RelevanceModel.load(folder)


def save_personalized(folder: Path, version: int = 0) -> None:
    """An embedding-tower reward model on a tiny log (vectors as cover features, no encoder)."""
    from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig, PersonalizedRewardModel

    rng = np.random.default_rng(40 + version)
    n = 200
    frame = pl.DataFrame(
        {
            "user_id": rng.integers(0, 10, n),
            "item_id": rng.integers(0, 12, n),
            "label": (rng.random(n) < 0.4).astype(np.float64),
            "timestamp": 1_700_000_000 + np.arange(n),
        }
    )
    covers = CoverInputs(np.arange(12), rng.normal(size=(12, 5)).astype(np.float32))
    config = PersonalizedConfig(dim=4 + version, hidden=8, epochs=1, batch_size=64)
    PersonalizedRewardModel(config).fit(frame, covers, seed=version).save(folder)


def load_personalized(folder: Path) -> object:
    from icg_rec.rewards.personalized import PersonalizedRewardModel

    return PersonalizedRewardModel.load(folder)


def save_pipeline(folder: Path, version: int = 0) -> None:
    pipe = tiny_pipeline()
    if version:
        with torch.no_grad():
            for parameter in pipe.adapter.parameters():
                parameter.add_(0.01 * version)
    pipe.save_pretrained(folder)


def load_pipeline(folder: Path) -> object:
    from icg_rec.generation.pipeline import ICGPipeline

    return ICGPipeline.from_pretrained(folder, TinyImageEncoder(), TinyTextEncoder())


def save_cohorts(folder: Path, version: int = 0) -> None:
    from icg_rec.cohorts.clustering import CohortConfig, UserCohorts

    rng = np.random.default_rng(30 + version)
    x = np.concatenate([rng.normal(k * 4, 0.2, size=(20, 4)) for k in range(3)]).astype(np.float32)
    UserCohorts(CohortConfig(n_cohorts=3, seed=version)).fit(np.arange(60) + version, x).save(folder)


def load_cohorts(folder: Path) -> object:
    from icg_rec.cohorts.clustering import UserCohorts

    return UserCohorts.load(folder)


def ab_log(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    return pl.DataFrame(
        {
            "user_id": rng.integers(0, 300, n),
            "item_id": np.arange(n) % 40,
            "label": (rng.random(n) < 0.2 + 0.05 * seed).astype(np.float64),
            "timestamp": 1_700_000_000 + np.arange(n) * 900,
        }
    )


def save_ab_plan(folder: Path, version: int = 0) -> None:
    from icg_rec.experiment.plan import ABPlanConfig, plan_ab, write_plan

    plan, table = plan_ab(ab_log(version), ABPlanConfig(salt=f"v{version}"))
    covers = {
        arm: pl.DataFrame(
            {"item_id": [version, 1], "cohort_id": [-1, 0], "cover_key": [arm, "k"], "path": ["a", "b"]}
        )
        for arm in plan.config.arms
    }
    write_plan(plan, table, folder, covers)


def load_ab_plan(folder: Path) -> tuple:
    from icg_rec.experiment.plan import read_plan

    return read_plan(folder)


class ColourGenerator:
    """Flat 8 x 8 covers from (item, user embedding); counts what it makes, `delay` seconds per batch."""

    version = "g1"

    def __init__(self, delay: float = 0.0) -> None:
        self.made = 0
        self.delay = delay

    def generate(self, item_ids, user_embeddings, seeds):
        time.sleep(self.delay)
        self.made += len(seeds)
        base = (item_ids[:, None].float() * 0.013 + user_embeddings[:, :3].float() * 0.1) % 1.0  # (B, 3)
        return base[:, :, None, None].expand(-1, 3, 8, 8).clone()


def refresh_inputs(folder: Path) -> tuple[pl.DataFrame, object]:
    """Five items with reference images under `folder`, and two fitted cohorts (15 covers with generics)."""
    from PIL import Image

    from icg_rec.cohorts.clustering import CohortConfig, UserCohorts

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(5):
        Image.new("RGB", (4, 4), (i * 40, 10, 10)).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    items = pl.DataFrame(
        {"item_id": np.arange(5), "title": [f"t{i}" for i in range(5)], "text": "g", "image_path": paths}
    )
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(k * 4, 0.2, size=(20, 4)) for k in range(2)]).astype(np.float32)
    return items, UserCohorts(CohortConfig(n_cohorts=2)).fit(np.arange(40), x)


def warmup_covers() -> torch.Tensor:
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.2, 0.9], [0.5, 0.5, 0.5]])
    return colours[:, :, None, None].expand(4, 3, 16, 16).clone()


class TinyImageEncoder:
    """Perception for tests (as tests/conftest.py's): per-channel mean and std of a PIL image (6-d)."""

    name = "tiny-colour-stats"
    dim = 6

    def encode(self, images, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        rows = [np.asarray(image, dtype=np.float32) / 255.0 for image in images]
        return np.stack([np.concatenate([a.mean(axis=(0, 1)), a.std(axis=(0, 1))]) for a in rows])


class TinyTextEncoder:
    """Perception for tests (as tests/conftest.py's): counts of the vowels (5-d)."""

    name = "tiny-letters"
    dim = 5

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return np.array([[t.lower().count(c) for c in "aeiou"] for t in texts], dtype=np.float32)


def tiny_pipeline():
    """A 16 px pixel-space pipeline with a 16-wide prompter, from a fixed seed."""
    from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
    from icg_rec.generation.prompter import PrompterConfig

    torch.manual_seed(0)
    config = GeneratorConfig(
        resolution=16, cross_attention_dim=32, num_tokens=4, user_dim=4,
        prompter=PrompterConfig(hidden_size=16, num_layers=1, num_heads=2, num_meta_tokens=3, image_prefix_tokens=2),
    )  # fmt: skip
    pipe = build_pipeline(config, TinyImageEncoder(), TinyTextEncoder())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def warmup_trainer(steps: int):
    from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer

    config = WarmupConfig(steps=steps, batch_size=2, sample_items=2, sample_steps=2, checkpoint_every=1)
    return WarmupTrainer(tiny_pipeline(), config)


def save_warmup_checkpoint(folder: Path, version: int = 0) -> None:
    """A warm-up run of 1 + version steps; its checkpoint lands in folder/checkpoint."""
    warmup_trainer(1 + version).fit(TITLES, warmup_covers(), output_dir=folder)


def load_warmup_checkpoint(folder: Path) -> object:
    return warmup_trainer(4).fit(TITLES, warmup_covers(), output_dir=folder, resume=True)


def aligner(steps: int):
    from icg_rec.alignment import AlignConfig, Audience, ItemSet, RewardAligner
    from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig

    class Brightness:
        name = "brightness"
        differentiable = True

        def __call__(self, inputs):
            return inputs.images.mean(dim=(1, 2, 3))  # (B,)

    reward = MultiReward(
        {"brightness": Brightness()}, MultiRewardConfig(weights={"brightness": 1.0}, normalize=True)
    )
    config = AlignConfig(
        steps=steps, batch_size=2, num_inference_steps=2, grad_steps=1, sample_pairs=2, checkpoint_every=1
    )
    items = ItemSet(titles=TITLES, images=warmup_covers(), item_ids=torch.arange(10, 14))
    audience = Audience(
        user_ids=torch.arange(3), vectors=torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    )
    return RewardAligner(tiny_pipeline(), reward, config), items, audience


def save_align_checkpoint(folder: Path, version: int = 0) -> None:
    trainer, items, audience = aligner(1 + version)
    trainer.fit(items, audience, folder)


def load_align_checkpoint(folder: Path) -> object:
    trainer, items, audience = aligner(4)
    return trainer.fit(items, audience, folder, resume=True)
