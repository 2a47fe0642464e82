"""The whole ICG loop on SimWorld, as `icg-rec quickstart` runs it. Like cli.py, this module only composes.

1. SimWorld: items with rendered covers, users in taste cohorts, a click log labelled by the oracle.
   Each user's last 20% of impressions (by time) are the test rows; everything learned below sees train rows only.
2. Rewards: a personalized reward model (CNN cover tower) fitted on the train clicks, a title-cover
   relevance projection fitted on the reference covers, and image statistics (aesthetic).
3. Generator: the embedded ICG pipeline, warmed up on the reference covers (denoising loss, no labels),
   then aligned with DRaFT-K to aesthetic + relevance + personalized rewards.
4. Cohorts: k-means over the reward model's user vectors; covers are refreshed per (item, cohort), plus
   one generic cover per item (zero user embedding).
5. Judge: the oracle's p(click) for each test row's user and item, with the original cover, the generic
   generated cover and the cover generated for the user's cohort. The oracle never trains anything.
6. Ranker: LightGBM lift on the test rows (icg_rec.ranking.cover_arms): ids + click rates, + the original
   cover, + the cover refreshed for the user's cohort (each cover as its embedding and its out-of-fold
   personalized reward score for the user).
7. A/B: assignment, sizing from the train log as the pre-period, and per-arm cover manifests.
"""

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from icg_rec.alignment import AlignConfig, Audience, ItemSet, RewardAligner, personalized_user_vectors
from icg_rec.cohorts.cache import CoverCache
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.cohorts.generator import PipelineCoverGenerator
from icg_rec.cohorts.refresh import GENERIC_COHORT, contact_sheets, refresh_covers
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.data.splits import per_user_temporal_split
from icg_rec.encoders import MiniLMTextEncoder
from icg_rec.encoders.small import ColourGridEncoder, MemoTextEncoder
from icg_rec.experiment.commands import arm_cover_manifests
from icg_rec.experiment.plan import ABPlanConfig, plan_ab, write_plan
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.prompter import PrompterConfig
from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer
from icg_rec.io import atomic_write, write_json
from icg_rec.metrics import format_relaimpr
from icg_rec.ranking.cover_arms import (
    NO_COVER,
    ORIGINAL,
    PERSONALIZED,
    CoverArmsConfig,
    ItemCovers,
    load_refreshed_covers,
    reward_model_scorer,
    run_cover_arms,
)
from icg_rec.ranking.lift import LiftConfig, write_lift_report
from icg_rec.ranking.lightgbm_ranker import LightGBMRanker
from icg_rec.rewards.aesthetic import AestheticReward
from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig
from icg_rec.rewards.personalized import CoverFeatures, PersonalizedConfig, PersonalizedRewardModel
from icg_rec.rewards.relevance import RelevanceConfig, RelevanceModel, RelevanceReward

logger = logging.getLogger(__name__)


@dataclass
class QuickstartConfig:
    """Sizes of the quickstart; the defaults finish in minutes on 2 CPU cores."""

    seed: int = 0  # every random draw of the run
    image_size: int = 16  # SimWorld covers and generator resolution, in pixels
    n_users: int = 2000  # SimWorld users
    n_items: int = 400  # SimWorld items
    n_cohorts: int = 8  # SimWorld taste cohorts, and the cohorts covers are refreshed for
    warmup_steps: int = 300  # denoising warm-up steps of the generator (150 left it item-blind)
    align_steps: int = 150  # DRaFT-K alignment steps
    sample_steps: int = 6  # DDIM steps for every cover
    grad_steps: int = 2  # K: denoising steps back-propagated during alignment
    reward_weights: tuple[float, float, float] = (0.5, 1.0, 2.0)  # aesthetic, relevance, personalized
    lift_seeds: tuple[int, ...] = (0, 1, 2)  # ranker seeds of the lift experiment
    expected_lift: float = 0.05  # relative per-user CTR lift the A/B test is sized for
    threads: int = 1  # torch threads: tiny models; 2 threads on 2 busy cores stalled 12x here

    def sim_config(self) -> SimConfig:
        """The SimWorld the quickstart runs on."""
        return SimConfig(
            n_users=self.n_users,
            n_items=self.n_items,
            n_cohorts=self.n_cohorts,
            image_size=self.image_size,
            seed=self.seed,
        )

    def reward_config(self) -> PersonalizedConfig:
        """The personalized reward model: a cnn tower on the covers' pixels (alignment differentiates it)."""
        return PersonalizedConfig(cover_tower="cnn", image_size=self.image_size, epochs=6)


def run_quickstart(out_dir: str | Path, config: QuickstartConfig | None = None) -> dict:
    """Runs the loop and writes quickstart.json, report.md, contact sheets and the A/B plan into `out_dir`.

    Args:
        out_dir: output folder (created).
        config: sizes; the defaults are the README's quickstart.

    Returns:
        The content of quickstart.json.
    """
    config = config or QuickstartConfig()
    out = Path(out_dir)
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)

    def lap(name: str, began: float) -> float:
        seconds[name] = round(time.perf_counter() - began, 1)
        logger.info("quickstart %s: %.0f s", name, seconds[name])
        return time.perf_counter()

    t = time.perf_counter()
    world = SimWorld.generate(config.sim_config())
    items = world.save_covers(out / "reference_covers").items
    train, test = per_user_temporal_split(world.dataset.interactions, test_fraction=0.2)
    t = lap("world", t)

    text = MemoTextEncoder(MiniLMTextEncoder())
    grid = ColourGridEncoder(image_size=config.image_size).freeze()
    titles = items["title"].to_list()
    item_ids = items["item_id"].to_numpy()
    reward_config = config.reward_config()
    personal = PersonalizedRewardModel(reward_config).fit(
        train, CoverFeatures(item_ids, world.covers.numpy()), seed=config.seed
    )
    personal.freeze()
    relevance = RelevanceModel(RelevanceConfig(shared_dim=32, epochs=60, batch_size=64))
    relevance.fit(text.encode(titles), grid(world.covers).numpy(), seed=config.seed)
    relevance.freeze()
    t = lap("rewards", t)

    user_ids = np.arange(config.n_users)
    vectors = personalized_user_vectors(personal, user_ids)  # (n_users, dim)
    pipe = build_pipeline(
        GeneratorConfig(
            resolution=config.image_size,
            cross_attention_dim=64,
            num_tokens=4,
            user_dim=personal.config.dim,
            prompter=PrompterConfig(
                hidden_size=64, num_layers=2, num_heads=4, num_meta_tokens=4, image_prefix_tokens=2
            ),
        ),
        grid,
        text,
    )
    item_set = ItemSet(titles, world.covers, items["item_id"].to_torch())
    WarmupTrainer(
        pipe,
        WarmupConfig(
            steps=config.warmup_steps,
            batch_size=32,
            learning_rate=2e-3,
            sample_steps=config.sample_steps,
            guidance_scale=1.0,
            timestep_power=2.0,  # favour high noise, where the covers' item conditioning is learned
            seed=config.seed,
        ),
    ).fit(item_set.titles, item_set.images, out / "warmup")
    t = lap("warmup", t)

    weights = dict(zip(("aesthetic", "relevance", "personalized"), config.reward_weights, strict=True))
    rewards = {
        "aesthetic": AestheticReward(),
        "relevance": RelevanceReward(relevance, text, grid),
        "personalized": personal,
    }
    RewardAligner(
        pipe,
        MultiReward(rewards, MultiRewardConfig(weights=weights)),
        AlignConfig(
            steps=config.align_steps,
            batch_size=8,
            learning_rate=1e-2,
            num_inference_steps=config.sample_steps,
            grad_steps=config.grad_steps,
            anchor_weight=1.0,  # 0.1 let DRaFT trade the item for one cover style for everyone
            seed=config.seed,
        ),
    ).fit(item_set, Audience(torch.from_numpy(user_ids), vectors), out / "align")
    t = lap("alignment", t)

    cohorts = UserCohorts(CohortConfig(n_cohorts=config.n_cohorts, seed=config.seed)).fit(
        user_ids, vectors.numpy()
    )
    cohorts.save(out / "cohorts")  # `python -m eval.lift --covers` reads the user -> cohort mapping back
    generator = PipelineCoverGenerator(
        pipe, item_ids, titles, list(world.covers), config.sample_steps, guidance_scale=1.0
    )
    manifest, refresh = refresh_covers(items, cohorts, generator, out / "refresh", config.seed, batch_size=64)
    cache = CoverCache(out / "refresh" / "covers")
    sheets = contact_sheets(manifest.filter(pl.col("cohort_id") >= 0), cache, out / "contact_sheets", 16)
    covers = {key: cache.get(key) for key in manifest["key"]}
    t = lap("refresh", t)

    oracle = _judge(world, test, cohorts, manifest, covers)
    t = lap("judge", t)

    lift = _ranker_lift(world, train, test, cohorts, grid, reward_config, config, out)
    t = lap("lift", t)

    plan, table = plan_ab(train, ABPlanConfig(expected_lift=config.expected_lift))
    write_plan(plan, table, out / "ab", arm_cover_manifests(items, manifest))
    lap("ab", t)

    result = {
        "oracle_ctr": oracle,
        "ranker_lift": lift,
        "ab": {
            "sample_size_per_arm": plan.sample_size_per_arm,
            "sample_size_per_arm_without_cuped": plan.sample_size_per_arm_without_cuped,
            "duration_days": plan.duration_days,
            "mde_at_available_users": plan.mde_at_available_users,
        },
        "refresh": asdict(refresh),
        "config": asdict(config),
        "seconds": round(time.perf_counter() - start, 1),
        "seconds_by_stage": seconds,
    }
    write_json(out / "quickstart.json", result)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(_report(result, sheets, out)))
    return result


def _judge(
    world: SimWorld, test: pl.DataFrame, cohorts: UserCohorts, manifest: pl.DataFrame, covers: dict
) -> dict[str, float]:
    """Mean oracle p(click) over the test rows for each kind of cover."""
    users = test["user_id"].to_torch()
    item_ids = test["item_id"].to_torch()
    user_cohort = cohorts.cohort_of(users.numpy())
    key_of = {(i, c): k for i, c, k in manifest.select("item_id", "cohort_id", "key").iter_rows()}
    kinds = {
        "original": world.covers[item_ids],
        "generic": torch.stack([covers[key_of[(i, GENERIC_COHORT)]] for i in item_ids.tolist()]),
        "aligned_personalized": torch.stack(
            [covers[key_of[(i, c)]] for i, c in zip(item_ids.tolist(), user_cohort.tolist(), strict=True)]
        ),
    }
    result = {}
    with torch.no_grad():
        for name, images in kinds.items():
            p = world.oracle.click_prob(users, images, item_ids)
            result[name] = float(p.mean())
    result["personalized_vs_generic"] = result["aligned_personalized"] / result["generic"] - 1
    result["personalized_vs_original"] = result["aligned_personalized"] / result["original"] - 1
    return result


def _ranker_lift(
    world: SimWorld,
    train: pl.DataFrame,
    test: pl.DataFrame,
    cohorts: UserCohorts,
    grid: ColourGridEncoder,
    reward_config: PersonalizedConfig,
    config: QuickstartConfig,
    out: Path,
) -> dict:
    """LightGBM on the three cover arms; the refreshed covers are read back from `out/refresh`."""

    def embed(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return grid(images).numpy()  # (n, d)

    original = ItemCovers(np.arange(world.config.n_items), world.covers)
    result = run_cover_arms(
        train,
        test,
        original,
        load_refreshed_covers(out / "refresh"),
        pl.DataFrame({"user_id": cohorts.user_ids_, "cohort_id": cohorts.labels_}),
        embed,
        LightGBMRanker,
        CoverArmsConfig(seed=config.seed, lift=LiftConfig(baseline=NO_COVER, seeds=list(config.lift_seeds))),
        fit_scorer=reward_model_scorer(reward_config, original, seed=config.seed),
        progress=False,
    )
    write_lift_report(result, out / "lift", {"dataset": "simworld", "ranker": "lightgbm", "protocol": "warm"})
    lift = result.lift[PERSONALIZED]
    return {
        "relaimpr": lift.relaimpr,
        "auc_delta": lift.auc_delta,
        "ci95": list(lift.ci95),
        "p_value": lift.p_value,
        "auc": {name: arm.auc for name, arm in result.arms.items()},
        "original_cover_relaimpr": result.lift[ORIGINAL].relaimpr,
    }


def _report(result: dict, sheets: list[Path], out: Path) -> str:
    o, r, ab = result["oracle_ctr"], result["ranker_lift"], result["ab"]
    images = "\n".join(f"![{p.stem}]({p.relative_to(out)})" for p in sheets)
    return f"""# icg_rec quickstart (SimWorld)

Total {result["seconds"]:.0f} s. Stages: {result["seconds_by_stage"]}

## Covers judged by the oracle (test rows, never used for training)

| cover shown | mean oracle p(click) |
|---|---|
| original reference cover | {o["original"]:.4f} |
| generic generated cover (zero user) | {o["generic"]:.4f} |
| cover generated for the user's cohort, aligned | {o["aligned_personalized"]:.4f} |

Personalized vs generic: {o["personalized_vs_generic"]:+.1%}; vs original: {o["personalized_vs_original"]:+.1%}.

## Ranker lift (LightGBM, seeds {result["config"]["lift_seeds"]})

AUC per arm: {r["auc"]}. Personalized cover features vs ids + click rates: RelaImpr {format_relaimpr(r["relaimpr"])},
AUC delta {r["auc_delta"]:+.4f} (95% CI [{r["ci95"][0]:+.4f}, {r["ci95"][1]:+.4f}], p = {r["p_value"]:.3f}).
Details: `lift/report.md`.

## A/B plan

{ab["sample_size_per_arm"]:,} users per arm with CUPED ({ab["sample_size_per_arm_without_cuped"]:,} without),
{ab["duration_days"]} days; spec in `ab/spec.md`.

## Covers per cohort

{images}
"""
