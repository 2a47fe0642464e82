"""Metrics benchmark: icg_rec's exact AUC and gAUC against scikit-learn, side by side on the same data.

    python -m eval.bench_metrics [--rows 10000000] [--users 100000] [--loop-users 1000] [--seed 0]

AUC: `icg_rec.metrics.auc` vs `sklearn.metrics.roc_auc_score` on `--rows` rows of float64 click
probabilities (all distinct, so the sort is the whole cost), then on logits (mixed signs). gAUC:
`icg_rec.metrics.gauc` vs a per-user loop of `roc_auc_score` over `--users` users with about 20
impressions each. The loop is timed on a random sample of `--loop-users` users and scaled linearly
to all users (its cost is per user); the grouping it needs (one stable argsort) is timed in full.
Each side is timed best of `--repeats`. The last line is `auc_speedup=X gauc_speedup=Y`.
"""

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from icg_rec.metrics import auc, gauc


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(seconds of the fastest of `repeats` calls, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def click_log(n_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits): clicks drawn from the logits plus noise, about 10% CTR."""
    logits = rng.normal(-2.6, 1.0, n_rows)
    labels = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-(logits + rng.normal(0.0, 1.0, n_rows))))).astype(
        np.int8
    )
    return labels, logits


def bench_auc(labels: np.ndarray, scores: np.ndarray, name: str, repeats: int) -> float:
    ours_s, ours = best_time(lambda: auc(labels, scores), repeats)
    ref_s, ref = best_time(lambda: roc_auc_score(labels, scores), repeats)
    print(
        f"auc ({name}, {len(labels):,} rows): icg_rec {ours_s:.3f} s, sklearn {ref_s:.3f} s, "
        f"speedup {ref_s / ours_s:.1f}x (|difference| {abs(ours - ref):.1e})"
    )
    assert abs(ours - ref) <= 1e-9, (ours, ref)
    return ref_s / ours_s


def sklearn_gauc_loop(labels: np.ndarray, scores: np.ndarray, bounds: np.ndarray, users: np.ndarray) -> float:
    """Impression-weighted mean of roc_auc_score over `users` (rows of user u: bounds[u]:bounds[u+1])."""
    total, weight = 0.0, 0
    for u in users:
        y = labels[bounds[u] : bounds[u + 1]]
        if y.min() == y.max():
            continue
        total += roc_auc_score(y, scores[bounds[u] : bounds[u + 1]]) * len(y)
        weight += len(y)
    return total / weight


def bench_gauc(n_users: int, loop_users: int, repeats: int, rng: np.random.Generator) -> float:
    per_user = 1 + rng.poisson(19, n_users)
    groups = rng.permutation(np.repeat(np.arange(n_users), per_user))  # rows arrive in any order
    labels, logits = click_log(len(groups), rng)
    scores = 1.0 / (1.0 + np.exp(-logits))
    ours_s, ours = best_time(lambda: gauc(labels, scores, groups), repeats)

    group_s, order = best_time(lambda: np.argsort(groups, kind="stable"), repeats)
    y, s = labels[order], scores[order]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=n_users))])
    sample = rng.choice(n_users, loop_users, replace=False)
    loop_s, ref = best_time(lambda: sklearn_gauc_loop(y, s, bounds, sample), repeats)
    ref_s = group_s + loop_s * n_users / loop_users
    rows = np.isin(groups, sample)
    check = gauc(labels[rows], scores[rows], groups[rows])
    print(
        f"gauc ({n_users:,} users, {len(groups):,} rows, {ours.n_skipped:,} one-class users skipped): "
        f"icg_rec {ours_s:.3f} s, sklearn loop {ref_s:.2f} s (timed on {loop_users:,} users, scaled "
        f"x{n_users / loop_users:.0f}), speedup {ref_s / ours_s:.1f}x "
        f"(|difference| on the sampled users {abs(check.value - ref):.1e})"
    )
    assert abs(check.value - ref) <= 1e-9, (check.value, ref)
    return ref_s / ours_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--loop-users", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    print(f"{os.cpu_count()} CPUs, 1-min load average {os.getloadavg()[0]:.1f}")
    labels, logits = click_log(args.rows, rng)
    auc_speedup = bench_auc(labels, 1.0 / (1.0 + np.exp(-logits)), "probabilities", args.repeats)
    bench_auc(labels, logits, "logits, mixed signs", args.repeats)
    gauc_speedup = bench_gauc(args.users, args.loop_users, args.repeats, rng)
    print(f"auc_speedup={auc_speedup:.1f} gauc_speedup={gauc_speedup:.1f}")


if __name__ == "__main__":
    main()
