"""SimWorld benchmark: generation time at two scales, and the oracle's calibration numbers.

    python -m eval.bench_sim [--seed 0]

Calibration (on the default world): log CTR, the oracle's own AUC on its sampled log (a ceiling no
ranker can beat in expectation), the AUC without the visual-taste term, and how much a user's
click probability moves when the cover is swapped: the average reference cover ("generic"), the
best random-search cover for the user's own cohort, and the best cover of another cohort.
"""

import argparse
import os
import time
from dataclasses import replace

import torch
from sklearn.metrics import roc_auc_score

from icg_rec.data.sim import SimConfig, SimWorld


def timed_generate(config: SimConfig) -> tuple[SimWorld, float, float]:
    """The world, wall seconds and CPU seconds (all threads) of one generation."""
    wall, cpu = time.perf_counter(), time.process_time()
    world = SimWorld.generate(config)
    return world, time.perf_counter() - wall, time.process_time() - cpu


def calibration(world: SimWorld, n_users: int = 1000) -> dict[str, float]:
    """CTR, oracle AUCs and the cover-swap probabilities (item terms left out) on up to n_users users."""
    frame = world.dataset.interactions
    labels = frame["label"].to_numpy()
    oracle = world.oracle
    with torch.no_grad():
        users = torch.tensor(frame["user_id"].to_numpy())
        items = torch.tensor(frame["item_id"].to_numpy())
        z_items = oracle.standardize(oracle.visual_attributes(world.covers))  # (n_items, A)
        no_taste = (
            oracle.user_bias[users]
            + oracle.item_quality[items]
            + oracle.user_genre_affinity[users, oracle.item_genre[items]]
        )

        _, best_covers = world.best_cohort_covers()  # (C, 3, S, S)
        z_best = oracle.standardized_attributes(best_covers)  # (C, A)
        sample = torch.arange(min(n_users, world.config.n_users))
        cohort = world.user_cohort[sample]
        n_items, n_cohorts = z_items.shape[0], z_best.shape[0]
        generic = torch.sigmoid(
            oracle.logits_from_attributes(sample.repeat_interleave(n_items), z_items.repeat(len(sample), 1))
        ).reshape(len(sample), n_items)  # (users, items): each reference cover, no item terms
        per_cohort = torch.sigmoid(
            oracle.logits_from_attributes(sample.repeat_interleave(n_cohorts), z_best.repeat(len(sample), 1))
        ).reshape(len(sample), n_cohorts)  # (users, C)
        own = per_cohort[torch.arange(len(sample)), cohort]
        other = (per_cohort.sum(dim=1) - own) / max(n_cohorts - 1, 1)
    return {
        "ctr": float(labels.mean()),
        "oracle_auc": roc_auc_score(labels, world.impression_prob.numpy()),
        "auc_without_taste": roc_auc_score(labels, no_taste.numpy()),
        "p_generic_cover": float(generic.mean()),
        "p_best_reference_cover": float(generic.max(dim=1).values.mean()),
        "p_best_cover_own_cohort": float(own.mean()),
        "p_best_cover_other_cohort": float(other.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    default = SimConfig(seed=args.seed)
    large = replace(default, n_users=10_000, n_items=2_000, impressions_per_user=50)
    SimWorld.generate(replace(default, n_users=50, n_items=20, impressions_per_user=5))  # warm-up
    world, default_s, default_cpu = timed_generate(default)
    _, large_s, large_cpu = timed_generate(large)
    load = os.getloadavg()[0]
    print(
        f"torch threads {torch.get_num_threads()}, 1-min load average {load:.1f} (on {os.cpu_count()} cores)"
    )
    print(
        f"default {default.n_users}x{default.n_items}x{default.impressions_per_user}: {default_s:.2f} s wall, {default_cpu:.2f} s CPU"
    )
    print(
        f"large {large.n_users}x{large.n_items}x{large.impressions_per_user}: {large_s:.2f} s wall, {large_cpu:.2f} s CPU"
    )
    stats = calibration(world)
    for name, value in stats.items():
        print(f"{name}: {value:.4f}")
    lift = stats["p_best_cover_own_cohort"] / stats["p_generic_cover"]
    print(
        f"generate_default_s={default_s:.2f} generate_10k_x_2k_s={large_s:.2f} "
        f"oracle_auc={stats['oracle_auc']:.3f} own_cohort_cover_ctr_ratio={lift:.2f}"
    )


if __name__ == "__main__":
    main()
