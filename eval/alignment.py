"""Does personalized reward alignment make covers users prefer? `python -m eval.alignment --out out/alignment`.

SimWorld, where the truth is known. The judge is the world's oracle click model; it never trains anything.
The training rewards are learned from the world's click log or from the covers alone:
  aesthetic     `AestheticReward` (image statistics, no model)
  relevance     `RelevanceReward`: a contrastive title <-> cover projection fitted on the reference covers
  personalized  `PersonalizedRewardModel` (cnn cover tower) fitted on the impression log
The generator's user embedding is the reward model's user vector (`personalized_user_vectors`).

Arms, all evaluated on the same fixed (item, user) pairs with the same noise per pair:
  warmup        the warm-up generator (denoising loss only)
  public        DRaFT-K alignment to aesthetic + relevance
  personal      DRaFT-K alignment to aesthetic + relevance + personalized
  personal_dpo  Diffusion-DPO on pairs ranked by aesthetic + relevance + personalized
Evaluation users are held out of the alignment audience. Per arm: judge_ctr (oracle p(click) of the
cover for its target user and item), aesthetic, relevance, fidelity (1 - pixel RMSE to the warm-up cover
made from the same noise; 1 = identical) and the training reward `personalized`, overall and per cohort.
Personalization controls, same item and noise: judge_ctr_wrong_cohort (the cover made for an evaluation
user of the next cohort, judged for the target user), judge_ctr_generic (the cover made for the zero
user) and cohort_distance (pixel RMSE between the target user's and the other cohort's cover);
`personalization_gap` = judge_ctr - judge_ctr_wrong_cohort with a user-clustered interval.

Sized for a 2-core CPU: a 16x16 world and generator (the embedded UNet is trained from scratch in the
warm-up), 6 DDIM steps, backprop through all of them (K = 6). Writes alignment.json and
contact_sheet_cohort<c>.png
(rows: reference cover, then one row per arm) to --out; a re-run reuses the warm-up and the arms it finds.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icg_rec.alignment import (
    AlignConfig,
    Audience,
    DPOAligner,
    DPOConfig,
    ItemSet,
    RewardAligner,
    evaluation_pairs,
    personalized_user_vectors,
)
from icg_rec.data.sim import SimConfig, SimWorld
from icg_rec.figures import contact_sheet
from icg_rec.generation.backbones import GeneratorConfig, build_pipeline
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.prompter import PrompterConfig
from icg_rec.generation.warmup import WarmupConfig, WarmupTrainer
from icg_rec.io import write_json
from icg_rec.rewards.aesthetic import AestheticReward
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.combiner import MultiReward, MultiRewardConfig
from icg_rec.rewards.personalized import CoverFeatures, PersonalizedConfig, PersonalizedRewardModel
from icg_rec.rewards.relevance import RelevanceConfig, RelevanceModel, RelevanceReward

PUBLIC = {"aesthetic": 0.5, "relevance": 1.0}
# personalized weight 4 (was 2): with the colour-statistics reward tower, 2 barely moved the training reward
# on the held-out pairs (chosen by that reward, not by the judge: eval/RESULTS.md, Alignment round 5)
PERSONAL = {"aesthetic": 0.5, "relevance": 1.0, "personalized": 4.0}
ORACLE = {"aesthetic": 0.5, "relevance": 1.0, "oracle": 2.0}  # diagnostic arm only
ARMS = ("public", "personal", "personal_dpo", "oracle_diagnostic")
# the judge: click probability (B,) of (user ids (B,), covers (B, 3, S, S), item ids (B,)); never trains
Judge = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class OracleReward:
    """DIAGNOSTIC ONLY: the judge as a training reward, to measure how far the generator can be steered.

    An arm trained on it is not evidence for the claim (the judge must never train); it separates "the
    generator cannot move" from "the learned personalized reward does not point where users' taste is".
    """

    name = "oracle"
    differentiable = True

    def __init__(self, world: SimWorld) -> None:
        self.world = world

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        return self.world.oracle.click_prob(inputs.user_ids, inputs.images, inputs.item_ids)  # (B,)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/alignment"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=16, help="world and generator cover side")
    p.add_argument(
        "--sim-impressions",
        type=int,
        default=SimConfig.impressions_per_user,
        help="impressions per user in the world's log (the personalized reward's training data)",
    )
    p.add_argument(
        "--warmup-steps", type=int, default=450, help="150 left covers item-independent (eval/RESULTS.md)"
    )
    p.add_argument(
        "--align-steps", type=int, default=200, help="DRaFT steps per arm (chosen by the training reward)"
    )
    p.add_argument("--dpo-rounds", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--lr", type=float, default=3e-3, help="DRaFT learning rate; 1e-2 cost relevance (eval/RESULTS.md)"
    )
    p.add_argument("--dpo-lr", type=float, default=1e-2, help="DPO learning rate")
    p.add_argument(
        "--anchor-weight", type=float, default=1.0, help="DRaFT token anchor; 0.1 let relevance collapse"
    )
    p.add_argument("--lora-rank", type=int, default=0, help="> 0: also train UNet attention LoRA")
    p.add_argument("--sample-steps", type=int, default=6, help="DDIM steps everywhere")
    p.add_argument("--grad-steps", type=int, default=6, help="K; 2 of 6 moved nothing (eval/RESULTS.md)")
    p.add_argument("--users-per-cohort", type=int, default=8, help="held-out evaluation users per cohort")
    p.add_argument("--items-per-user", type=int, default=4)
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS[:3]), help="aligned arms to run")
    p.add_argument("--reward-epochs", type=int, default=6, help="personalized reward model epochs")
    p.add_argument(
        "--pairwise-weight", type=float, default=0.0, help="personalized reward Bradley-Terry term"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 avoids stalls)")
    return p.parse_args(argv)


def public_rewards(titles: list[str], covers: torch.Tensor, args: argparse.Namespace):
    """The generator's perception and the public rewards, with relevance fitted on (title, cover) pairs.

    Returns:
        (text encoder, colour-grid encoder, {"aesthetic": ..., "relevance": ...}).
    """
    from icg_rec.encoders import MiniLMTextEncoder
    from icg_rec.encoders.small import ColourGridEncoder, MemoTextEncoder

    text = MemoTextEncoder(MiniLMTextEncoder())  # relevance re-encodes titles every step
    grid = ColourGridEncoder(
        grid=4, image_size=args.image_size
    ).freeze()  # EfficientNet would dominate a step
    relevance_model = RelevanceModel(RelevanceConfig(shared_dim=32, epochs=60, batch_size=64))
    relevance_model.fit(text.encode(titles), grid(covers).numpy(), seed=args.seed)
    relevance_model.freeze()
    return (
        text,
        grid,
        {"aesthetic": AestheticReward(), "relevance": RelevanceReward(relevance_model, text, grid)},
    )


def build_world(args: argparse.Namespace):
    """World, perception, rewards, items, audience and evaluation pairs."""
    world = SimWorld.generate(
        SimConfig(image_size=args.image_size, impressions_per_user=args.sim_impressions, seed=args.seed)
    )
    items_frame = world.dataset.items
    titles = items_frame["title"].to_list()
    item_ids = torch.as_tensor(items_frame["item_id"].to_numpy().copy())
    text, grid, public = public_rewards(titles, world.covers, args)
    personal = PersonalizedRewardModel(
        PersonalizedConfig(
            cover_tower="cnn",
            image_size=args.image_size,
            epochs=args.reward_epochs,
            pairwise_weight=args.pairwise_weight,
        )
    )
    personal.fit(
        world.dataset.interactions, CoverFeatures(item_ids.numpy(), world.covers.numpy()), seed=args.seed
    )
    personal.freeze()
    rewards = public | {"personalized": personal, "oracle": OracleReward(world)}
    pair_items, pair_users = evaluation_pairs(
        world.user_cohort, len(titles), args.users_per_cohort, args.items_per_user, args.seed
    )
    held_out = torch.zeros(len(world.user_cohort), dtype=torch.bool)
    held_out[pair_users] = True
    train_users = torch.nonzero(~held_out)[:, 0]
    audience = Audience(train_users, personalized_user_vectors(personal, train_users))
    items = ItemSet(titles, world.covers, item_ids)
    return world, text, grid, rewards, items, audience, pair_items, pair_users


def warm_pipeline(args, items: ItemSet, text, grid, user_dim: int) -> Path:
    """Warms up (or reuses) the generator; returns its saved folder."""
    folder = args.out / "warmup"
    if (folder / "pipeline").is_dir():
        return folder / "pipeline"
    torch.manual_seed(args.seed)
    config = GeneratorConfig(
        resolution=args.image_size, cross_attention_dim=64, num_tokens=4, user_dim=user_dim,
        prompter=PrompterConfig(hidden_size=64, num_layers=2, num_heads=4, num_meta_tokens=4, image_prefix_tokens=2),
    )  # fmt: skip
    pipe = build_pipeline(config, grid, text)
    warm = WarmupConfig(
        steps=args.warmup_steps, batch_size=32, learning_rate=2e-3, sample_steps=args.sample_steps,
        guidance_scale=1.0, checkpoint_every=50, seed=args.seed,
    )  # fmt: skip
    WarmupTrainer(pipe, warm).fit(items.titles, items.images, folder, resume=True)
    return folder / "pipeline"


def train_arm(
    name: str, args, warm: Path, rewards, items, audience, text, grid
) -> tuple[ICGPipeline, list, float]:
    """Aligns a fresh copy of the warm-up generator for one arm (or reloads a finished one)."""
    folder = args.out / name
    done = folder / "history.json"
    if done.is_file():
        return ICGPipeline.from_pretrained(folder / "pipeline", grid, text), json.loads(done.read_text()), 0.0
    start = time.perf_counter()
    pipe = ICGPipeline.from_pretrained(warm, grid, text)
    weights = {"public": PUBLIC, "oracle_diagnostic": ORACLE}.get(name, PERSONAL)
    reward = MultiReward({k: rewards[k] for k in weights}, MultiRewardConfig(weights=dict(weights)))
    common = dict(
        num_inference_steps=args.sample_steps,
        guidance_scale=1.0,
        seed=args.seed,
        sample_pairs=8,
        lora_rank=args.lora_rank,
    )
    if name == "personal_dpo":
        config = DPOConfig(
            rounds=args.dpo_rounds, pairs_per_round=16, candidates=4, steps_per_round=4,
            batch_size=args.batch_size, learning_rate=args.dpo_lr, **common,
        )  # fmt: skip
        aligner = DPOAligner(pipe, reward, config)
    else:
        config = AlignConfig(
            steps=args.align_steps, batch_size=args.batch_size, learning_rate=args.lr, grad_steps=args.grad_steps,
            anchor_weight=args.anchor_weight, checkpoint_every=20, **common,
        )  # fmt: skip
        aligner = RewardAligner(pipe, reward, config)
    aligner.fit(items, audience, folder, resume=True)
    seconds = time.perf_counter() - start
    write_json(done, aligner.history_)
    write_json(folder / "config.json", asdict(config))
    return pipe, aligner.history_, seconds


def covers_for(pipe: ICGPipeline, items: ItemSet, pair_items, vectors, args) -> torch.Tensor:
    """One cover per evaluation pair; pair i always uses noise seed 10_000 + i."""
    out = pipe(
        [items.titles[i] for i in pair_items.tolist()], [items.images[i] for i in pair_items.tolist()],
        users=vectors, seed=10_000, num_inference_steps=args.sample_steps, guidance_scale=1.0, batch_size=32,
        output_type="pt",
    )  # fmt: skip
    return out.images


def other_cohort_users(pair_users: torch.Tensor, cohorts: np.ndarray) -> torch.Tensor:
    """For each pair, an evaluation user of the next cohort (c + 1 mod C), at the same rank within it.

    The "wrong cohort" control: the same item and noise, a cover made for someone of another taste.
    """
    users, order = np.unique(pair_users.numpy(), return_index=True)
    user_cohort = cohorts[order]
    labels = np.unique(cohorts)
    members = {c: users[user_cohort == c] for c in labels}
    wrong = []
    for user, cohort in zip(pair_users.tolist(), cohorts.tolist(), strict=True):
        rank = int(np.searchsorted(members[cohort], user))
        nxt = members[labels[(np.searchsorted(labels, cohort) + 1) % len(labels)]]
        wrong.append(int(nxt[rank % len(nxt)]))
    return torch.tensor(wrong, dtype=torch.int64)


def controls(
    pipe, judge: Judge, items, pair_items, pair_users, own, wrong_vectors, args
) -> dict[str, np.ndarray]:
    """Per-pair judge CTR of the same item and noise made for another cohort's user and for no user.

    `judge_ctr_wrong_cohort` below `judge_ctr` is personalization; `cohort_distance` (pixel RMSE between
    the cover made for the target user and the one made for the other cohort's user) is how far apart the
    generator pulls the two covers at all.
    """
    item_ids = items.item_ids[pair_items]
    wrong = covers_for(pipe, items, pair_items, wrong_vectors, args)
    generic = covers_for(pipe, items, pair_items, torch.zeros_like(wrong_vectors), args)
    with torch.no_grad():
        return {
            "judge_ctr_wrong_cohort": judge(pair_users, wrong, item_ids).numpy(),
            "judge_ctr_generic": judge(pair_users, generic, item_ids).numpy(),
            "cohort_distance": (own - wrong).pow(2).flatten(1).mean(1).sqrt().numpy(),
        }


def score(covers, warm_covers, judge: Judge, rewards, items, pair_items, pair_users) -> dict[str, np.ndarray]:
    """Per-pair numbers of one arm."""
    item_ids = items.item_ids[pair_items]
    inputs = RewardInputs(covers, item_ids, pair_users, [items.titles[i] for i in pair_items.tolist()])
    with torch.no_grad():
        return {
            "judge_ctr": judge(pair_users, covers, item_ids).numpy(),
            "aesthetic": rewards["aesthetic"](inputs).numpy(),
            "relevance": rewards["relevance"](inputs).numpy(),
            "fidelity": (1 - (covers - warm_covers).pow(2).flatten(1).mean(1).sqrt()).numpy(),
            "personalized": rewards["personalized"](inputs).numpy(),
        }


def summarise(per_pair: dict[str, np.ndarray], cohorts: np.ndarray) -> dict:
    out = {k: float(v.mean()) for k, v in per_pair.items()}
    out["per_cohort"] = {
        int(c): {k: float(v[cohorts == c].mean()) for k, v in per_pair.items()} for c in np.unique(cohorts)
    }
    return out


def ratios(per_pair: dict[str, dict[str, np.ndarray]], arms: list[str]) -> dict[str, float]:
    """Judge CTR of each aligned arm over warm-up and over public-only; relevance against warm-up.

    Relevance is a cosine score that can be negative; a ratio to a warm-up score <= 0 would read a drop as a
    rise, so the ratio is NaN there and `relevance_<arm>_minus_warmup` is the number to read.
    """
    out = {}
    warm_relevance = float(per_pair["warmup"]["relevance"].mean())
    for name in arms:
        for base in ("warmup", "public"):
            if base != name and base in per_pair:
                out[f"judge_ctr_{name}_vs_{base}"] = float(
                    per_pair[name]["judge_ctr"].mean() / per_pair[base]["judge_ctr"].mean()
                )
        relevance = float(per_pair[name]["relevance"].mean())
        out[f"relevance_{name}_vs_warmup"] = (
            relevance / warm_relevance if warm_relevance > 0 else float("nan")
        )
        out[f"relevance_{name}_minus_warmup"] = relevance - warm_relevance
    return out


def paired_delta(a: np.ndarray, b: np.ndarray, users: np.ndarray) -> dict[str, float]:
    """Mean of a - b with a 95% normal interval from per-user means (pairs of a user are not independent)."""
    diff = a - b
    per_user = np.array([diff[users == u].mean() for u in np.unique(users)])
    half = 1.96 * per_user.std(ddof=1) / np.sqrt(len(per_user))
    return {"delta": float(diff.mean()), "ci95": [float(diff.mean() - half), float(diff.mean() + half)]}


def report(
    args: argparse.Namespace,
    setup: dict,
    per_pair: dict[str, dict[str, np.ndarray]],
    covers: dict[str, torch.Tensor],
    histories: dict[str, list],
    cohorts: np.ndarray,
    users: np.ndarray,
    timings: dict[str, float],
) -> dict:
    """Writes alignment.json and a contact sheet per cohort to args.out, prints the table, returns the result.

    Args:
        args: the parsed options (their `out`, `arms` and `image_size` are read).
        setup: what the run was (options, judge, pair counts), stored as is.
        per_pair: per arm (and "reference_cover") the per-pair numbers of `score` | `controls`.
        covers: per arm, (P, 3, S, S) covers of the pairs; "reference_cover" the items' own.
        histories: per aligned arm, the trainer's per-step log.
        cohorts: (P,) cohort of each pair's user.
        users: (P,) each pair's user id (the unit of the intervals).
        timings: seconds per stage.
    """
    arms = [name for name in covers if name != "reference_cover"]
    result = {
        "setup": setup,
        "arms": {name: summarise(v, cohorts) for name, v in per_pair.items()},
        "ratios": ratios(per_pair, args.arms),
        "judge_ctr_deltas": {
            f"{a}_minus_{b}": paired_delta(per_pair[a]["judge_ctr"], per_pair[b]["judge_ctr"], users)
            for a in args.arms
            for b in ("warmup", "public")
            if a != b and b in per_pair
        },
        "personalization_gap": {  # own-cohort cover minus the other cohort's cover, same item and noise
            name: paired_delta(per_pair[name]["judge_ctr"], per_pair[name]["judge_ctr_wrong_cohort"], users)
            for name in arms
        },
        "history": {name: h for name, h in histories.items() if h},
        "timings_s": timings,
    }
    write_json(args.out / "alignment.json", result)
    for c in np.unique(cohorts):
        rows = [covers["reference_cover"][cohorts == c][:8]] + [
            covers[name][cohorts == c][:8] for name in arms
        ]
        big = [F.interpolate(r, scale_factor=max(1, 48 // args.image_size), mode="nearest") for r in rows]
        contact_sheet(args.out / f"contact_sheet_cohort{c}.png", big)

    keys = ("judge_ctr", "judge_ctr_wrong_cohort", "judge_ctr_generic", "cohort_distance", "aesthetic",
            "relevance", "fidelity", "personalized")  # fmt: skip
    print("arm            " + " ".join(f"{k[-12:]:>12}" for k in keys))
    for name, v in result["arms"].items():
        print(f"{name:<14} " + " ".join(f"{v.get(k, float('nan')):12.4f}" for k in keys))
    print(" ".join(f"{k}={v:.3f}" for k, v in result["ratios"].items()))
    return result


def run_arms(args, warm, judge: Judge, rewards, items, audience, text, grid, pair_items, pair_users, cohorts):
    """Trains every arm of args.arms from the warm-up and scores all arms on the fixed pairs.

    Returns:
        (per_pair, covers, histories, timings) as `report` takes them (timings: seconds per arm).
    """
    vectors = personalized_user_vectors(rewards["personalized"], pair_users)  # (P, dim)
    wrong_vectors = personalized_user_vectors(
        rewards["personalized"], other_cohort_users(pair_users, cohorts)
    )
    pipes = {"warmup": ICGPipeline.from_pretrained(warm, grid, text)}
    histories, timings = {"warmup": []}, {}
    for name in args.arms:
        pipes[name], histories[name], timings[f"{name}_s"] = train_arm(
            name, args, warm, rewards, items, audience, text, grid
        )
        print(f"{name}: trained in {timings[f'{name}_s']:.0f} s", flush=True)
    covers = {name: covers_for(pipe, items, pair_items, vectors, args) for name, pipe in pipes.items()}
    per_pair = {
        name: score(covers[name], covers["warmup"], judge, rewards, items, pair_items, pair_users)
        | controls(pipe, judge, items, pair_items, pair_users, covers[name], wrong_vectors, args)
        for name, pipe in pipes.items()
    }
    covers["reference_cover"] = items.images[pair_items]  # (P, 3, S, S) the items' own covers, for context
    per_pair["reference_cover"] = score(
        covers["reference_cover"], covers["warmup"], judge, rewards, items, pair_items, pair_users
    )
    return per_pair, covers, histories, timings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    world, text, grid, rewards, items, audience, pair_items, pair_users = build_world(args)
    print(f"world, rewards and perception: {time.perf_counter() - start:.0f} s", flush=True)
    t0 = time.perf_counter()
    warm = warm_pipeline(args, items, text, grid, rewards["personalized"].config.dim)
    timings = {"setup_s": t0 - start, "warmup_s": time.perf_counter() - t0}
    cohorts = world.user_cohort[pair_users].numpy()
    per_pair, covers, histories, arm_timings = run_arms(
        args,
        warm,
        world.oracle.click_prob,
        rewards,
        items,
        audience,
        text,
        grid,
        pair_items,
        pair_users,
        cohorts,
    )
    setup = {
        "world": asdict(world.config),
        "args": {k: str(v) for k, v in vars(args).items()},
        "pairs": len(pair_users),
        "audience_users": len(audience),
        "public_weights": PUBLIC,
        "personal_weights": PERSONAL,
        "judge": "SimWorld oracle click_prob(user, cover, item)",
        "fidelity": "1 - RMSE in [0, 1] pixels to the warm-up cover from the same noise",
    }
    report(args, setup, per_pair, covers, histories, cohorts, pair_users.numpy(), timings | arm_timings)
    print(f"total_s={time.perf_counter() - start:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
