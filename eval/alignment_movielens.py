"""Alignment on MovieLens, judged by a reward model fitted on later clicks: `python -m eval.alignment_movielens`.

MovieLens has no oracle, so the judge is a second `PersonalizedRewardModel` (same cnn cover tower) fitted
on the *later half* of every user's rows (per-user temporal split); the personalized reward the
generator is aligned to is fitted on the earlier half. The judge never trains the generator and never sees
a row the training reward saw: disjoint in time, the same users (the judge must know the target users).

Everything else follows `eval.alignment` (SimWorld) and reuses its warm-up, arms and statistics: the same
arms (warm-up, public, public + personalized by DRaFT and by DPO), evaluation users held out of the
alignment audience, fixed (item, user) pairs with fixed noise, the wrong-cohort and generic-cover
controls. Cohorts are k-means (`UserCohorts`) over the training reward's centred user vectors. Posters
are read at --image-size pixels (16 by default, as SimWorld, to fit a 2-core CPU); the generator's
perception is the colour grid, relevance a contrastive MiniLM title <-> colour-grid projection fitted on
all 2,943 posters.

Writes alignment.json (per arm judge_ctr, aesthetic, relevance, fidelity, personalized, per cohort, and
the ratios / paired deltas; in `setup` the judge's rank agreement with the training reward on the
posters and its headroom: the judge CTR of the best of the items' posters per pair) and
contact_sheet_cohort<c>.png to --out. Options not listed by --help here
are those of `python -m eval.alignment --help` (steps, anchor, learning rate, arms, ...).
"""

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch
from scipy.stats import spearmanr

from eval import alignment
from icg_rec.alignment import Audience, ItemSet, evaluation_pairs, personalized_user_vectors
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.data.movielens import load_movielens_with_posters
from icg_rec.data.splits import per_user_temporal_split
from icg_rec.generation.warmup import reference_tensor
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.personalized import CoverFeatures, PersonalizedConfig, PersonalizedRewardModel


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/alignment_movielens"))
    p.add_argument("--data-dir", type=Path, default=None, help="MovieLens folder (default: shared data)")
    p.add_argument("--items", type=int, default=200, help="the most-rated posters the generator covers")
    own, rest = p.parse_known_args(argv)
    args = alignment.parse_args(["--out", str(own.out), *rest])
    args.data_dir, args.items = own.data_dir, own.items
    return args


def judge_of(model: PersonalizedRewardModel) -> alignment.Judge:
    """The judge model as a function of (user ids, covers, item ids), like the SimWorld oracle's click_prob."""

    def judge(user_ids: torch.Tensor, covers: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        return model(RewardInputs(covers, item_ids, user_ids))  # (B,); `fit_reward` froze the model

    return judge


def poster_headroom(judge: alignment.Judge, items: ItemSet, pair_items, pair_users) -> dict[str, float]:
    """How much the judge cares about the cover at all: every pair's user shown each of the items' posters.

    Returns the mean judge CTR of the pair's own poster, of the best poster per pair (the most a cover swap
    could gain, relevance ignored) and the mean within-pair standard deviation over the posters.
    """
    n = len(items)
    scores = []
    for user, item in zip(pair_users.tolist(), pair_items.tolist(), strict=True):
        users = torch.full((n,), user, dtype=torch.int64)
        item_ids = torch.full((n,), int(items.item_ids[item]), dtype=torch.int64)
        scores.append(judge(users, items.images, item_ids))  # (n,) this user and item, every poster
    grid = torch.stack(scores)  # (P, n)
    own = grid[torch.arange(len(pair_items)), pair_items]  # (P,)
    return {
        "own_poster_ctr": float(own.mean()),
        "best_poster_ctr": float(grid.amax(dim=1).mean()),
        "within_pair_sd": float(grid.std(dim=1).mean()),
    }


def fit_reward(rows: pl.DataFrame, covers: CoverFeatures, args: argparse.Namespace, seed: int):
    """The cnn-tower personalized reward model of `eval.rewards`' MovieLens settings (lr 1e-3, no taste posterior)."""
    config = PersonalizedConfig(
        cover_tower="cnn", image_size=args.image_size, epochs=args.reward_epochs, lr=1e-3, use_history=False,
        pairwise_weight=args.pairwise_weight,
    )  # fmt: skip
    model = PersonalizedRewardModel(config).fit(rows, covers, seed=seed)
    model.freeze()
    return model


def build(args: argparse.Namespace):
    """Posters, the two reward models, items, cohorts, audience and evaluation pairs."""
    dataset = load_movielens_with_posters(args.data_dir)
    catalogue = dataset.items.sort("item_id")
    posters = reference_tensor(catalogue["image_path"].to_list(), args.image_size)  # (n, 3, S, S)
    features = CoverFeatures(catalogue["item_id"].to_numpy(), posters.numpy())
    earlier, later = per_user_temporal_split(dataset.interactions, 0.5)
    reward = fit_reward(earlier, features, args, args.seed)
    judge = fit_reward(later, features, args, args.seed + 1)

    counts = earlier.join(later, on="item_id", how="semi")["item_id"].value_counts()
    chosen = np.sort(
        counts.sort(["count", "item_id"], descending=[True, False])["item_id"][: args.items].to_numpy()
    )
    index = np.searchsorted(catalogue["item_id"].to_numpy(), chosen)
    titles = catalogue["title"].to_list()
    items = ItemSet([titles[i] for i in index], posters[index], torch.as_tensor(chosen))

    text, grid, public = alignment.public_rewards(titles, posters, args)
    rewards = public | {"personalized": reward}

    users = reward.user_ids_  # (U,) sorted
    vectors = personalized_user_vectors(reward, users)  # (U, dim)
    cohorts = UserCohorts(CohortConfig(n_cohorts=8, seed=args.seed)).fit(users, vectors.numpy())
    known = np.isin(users, judge.user_ids_)  # evaluation users need rows in both halves
    pair_items, pair_rows = evaluation_pairs(
        torch.as_tensor(cohorts.labels_[known]),
        len(items),
        args.users_per_cohort,
        args.items_per_user,
        args.seed,
    )
    pair_users = torch.as_tensor(users[known])[pair_rows]  # (P,) MovieLens user ids
    pair_cohorts = cohorts.labels_[known][pair_rows.numpy()]
    held_out = np.isin(users, pair_users.numpy())
    audience = Audience(torch.as_tensor(users[~held_out]), vectors[torch.from_numpy(~held_out)])
    return judge, text, grid, rewards, items, audience, pair_items, pair_users, pair_cohorts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    judge_model, text, grid, rewards, items, audience, pair_items, pair_users, cohorts = build(args)
    judge = judge_of(judge_model)
    print(f"posters, reward models and perception: {time.perf_counter() - start:.0f} s", flush=True)
    t0 = time.perf_counter()
    warm = alignment.warm_pipeline(args, items, text, grid, rewards["personalized"].config.dim)
    timings = {"setup_s": t0 - start, "warmup_s": time.perf_counter() - t0}
    per_pair, covers, histories, arm_timings = alignment.run_arms(
        args, warm, judge, rewards, items, audience, text, grid, pair_items, pair_users, cohorts
    )
    reference = per_pair["reference_cover"]
    agreement = float(spearmanr(reference["personalized"], reference["judge_ctr"]).statistic)
    headroom = poster_headroom(judge, items, pair_items, pair_users)
    setup = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "pairs": len(pair_users),
        "audience_users": len(audience),
        "items": len(items),
        "public_weights": alignment.PUBLIC,
        "personal_weights": alignment.PERSONAL,
        "reward_model": asdict(rewards["personalized"].config),
        "judge": "PersonalizedRewardModel fitted on each user's later half of rows (the training reward: earlier half)",
        "judge_vs_training_reward_spearman_on_posters": agreement,
        "judge_poster_headroom": headroom,
        "fidelity": "1 - RMSE in [0, 1] pixels to the warm-up cover from the same noise",
    }  # fmt: skip
    alignment.report(
        args, setup, per_pair, covers, histories, cohorts, pair_users.numpy(), timings | arm_timings
    )
    print(
        f"judge_vs_reward_spearman={agreement:.3f} "
        + " ".join(f"{k}={v:.4f}" for k, v in headroom.items())
        + f" total_s={time.perf_counter() - start:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
