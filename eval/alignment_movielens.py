"""Alignment on MovieLens, judged by a reward model fitted on later clicks: `python -m eval.alignment_movielens`.

The judge is a `PersonalizedRewardModel` fitted on the later half of every user's rows, the training reward on
the earlier half (disjoint in time, the same users); the items are the 200 most-rated posters of both halves
(16 px); cohorts are k-means over the training reward's user vectors. The rest is `eval.alignment`'s.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from eval import alignment as sim
from icg_rec.cohorts.clustering import CohortConfig, UserCohorts
from icg_rec.data.movielens import load_movielens_with_posters
from icg_rec.data.splits import per_user_temporal_split
from icg_rec.generation.warmup import reference_tensor
from icg_rec.rewards.personalized import CoverInputs, PersonalizedConfig


def setup(args: argparse.Namespace, seed: int, folder: Path) -> sim.Setup:
    """Posters, the two reward models, items and users of MovieLens."""
    dataset = load_movielens_with_posters(args.data_dir)
    catalogue = dataset.items.sort("item_id")
    titles, posters = (
        catalogue["title"].to_list(),
        reference_tensor(catalogue["image_path"].to_list(), sim.SIZE),
    )
    covers = CoverInputs(catalogue["item_id"].to_numpy(), posters.numpy())
    config = PersonalizedConfig(cover_tower="cnn", image_size=sim.SIZE, epochs=6, lr=1e-3, use_history=False)
    earlier, later = per_user_temporal_split(dataset.interactions, 0.5)
    text, grid, rewards = sim.public_rewards(titles, posters, seed)
    rewards["personalized"] = reward = sim.reward_model(earlier, covers, config, seed, folder / "reward")
    rewards["judge"] = judge = sim.reward_model(later, covers, config, seed + 1, folder / "judge")
    counts = earlier.join(later, on="item_id", how="semi")["item_id"].value_counts().sort(["count", "item_id"], descending=[True, False])  # fmt: skip
    chosen = np.sort(counts["item_id"][: args.items].to_numpy())  # the most-rated items rated in both halves
    index = np.searchsorted(catalogue["item_id"].to_numpy(), chosen)
    items = sim.al.ItemSet([titles[i] for i in index], posters[index], torch.as_tensor(chosen))
    users = reward.user_ids_  # (U,) sorted
    cohorts = UserCohorts(CohortConfig(n_cohorts=8, seed=seed)).fit(
        users, sim.al.personalized_user_vectors(reward, users).numpy()
    )
    known = np.isin(users, judge.user_ids_)  # evaluation users need rows in both halves
    return sim.make_setup(items, rewards, users[known], cohorts.labels_[known], seed, text, grid)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=None, help="MovieLens folder (default: shared data)")
    p.add_argument("--items", type=int, default=200, help="the most-rated posters the generator covers")
    args = sim.parse_args(argv, p)
    return sim.run(args, lambda _, seed, folder: setup(args, seed, folder), ["movielens"])


if __name__ == "__main__":
    sys.exit(main())
