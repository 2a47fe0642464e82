"""Cost of one training step of the personalized reward model as the catalogue and the log grow.

    python -m eval.bench_reward_step [--batch-size 1024] [--steps 5]

Side by side in one run, on the same network and synthetic data (cnn tower, 64 px covers, 100 rows per
item): this tree's step (`training.step_loss`: the batch's distinct covers, histories from the incremental
table) and the step before it, rebuilt here from the same network's parts (every cover through the tower, the
per-taste log-likelihood of every training row, out-of-fold sums, then the batch). Each step includes
backward and the optimizer update; times are the median of `--steps` steps after one untimed step.
Last line: `step_ms_small=A step_ms_large=B before_ms_large=C` (smallest and largest catalogue).
"""

import argparse
import statistics
import sys
import time

import torch
from torch.nn import functional as F

from icg_rec.rewards.personalized.config import PersonalizedConfig
from icg_rec.rewards.personalized.net import PersonalizedNet
from icg_rec.rewards.personalized.training import HistoryTable, all_covers, negatives_by_user, step_loss

SIZES = [(400, 40_000), (1_600, 160_000), (6_400, 640_000)]  # (items, training rows)


def _data(n_items: int, n_rows: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n_items, 3, 64, 64, generator=gen)
    n_users = n_rows // 40
    u = torch.randint(1, n_users + 1, (n_rows,), generator=gen)
    i = torch.randint(1, n_items + 1, (n_rows,), generator=gen)
    y = (torch.rand(n_rows, generator=gen) < 0.1).float()
    folds = torch.randint(0, 5, (n_rows,), generator=gen)
    return images, n_users, (u, i, y, folds)


def _timed(step, steps: int) -> float:
    step()  # untimed warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(
    config: PersonalizedConfig, n_items: int, n_rows: int, batch_size: int, steps: int
) -> tuple[float, float]:
    """Median ms of this tree's training step and of the step before it, on one synthetic catalogue."""
    torch.manual_seed(0)
    images, n_users, rows = _data(n_items, n_rows, seed=0)
    u, i, y, folds = rows
    net = PersonalizedNet(config, n_users, n_items, 1, 0).train()
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr)
    with torch.no_grad():
        table = HistoryTable(
            net.history_loglik(all_covers(net, images)[i], u, i, y), u, folds, n_users + 1, 5
        )
    negatives = negatives_by_user(u, y, n_users + 1)
    gen = torch.Generator().manual_seed(0)

    def batch() -> torch.Tensor:
        return torch.randint(0, n_rows, (batch_size,), generator=gen).unique()

    def step_now() -> None:
        loss = step_loss(net, config, images, rows, batch(), table, negatives, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def step_before() -> None:
        b = batch()
        c_all = all_covers(net, images)  # (n_items + 1, dim): every cover, every step
        loglik = net.history_loglik(c_all[i], u, i, y)  # (n_rows, n_tastes): the whole log, every step
        total = torch.zeros(n_users + 1, loglik.shape[1]).index_add(0, u, loglik)
        in_fold = torch.zeros((n_users + 1) * 5, loglik.shape[1]).index_add(0, u * 5 + folds, loglik)
        oof = total[u[b]] - in_fold[u[b] * 5 + folds[b]]  # (b, n_tastes)
        loss = F.binary_cross_entropy_with_logits(net.logit(c_all[i[b]], u[b], oof, i[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()

    return _timed(step_now, steps), _timed(step_before, steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_reward_step", description=__doc__)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side and size")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = PersonalizedConfig(cover_tower="cnn", batch_size=args.batch_size)
    print(f"{'items':>6} {'rows':>8} {'this tree ms':>13} {'before ms':>10} {'ratio':>7}")
    results = []
    for n_items, n_rows in SIZES:
        now, before = measure(config, n_items, n_rows, args.batch_size, args.steps)
        results.append((now, before))
        print(f"{n_items:>6} {n_rows:>8} {now:>13.1f} {before:>10.1f} {before / now:>6.1f}x")
    print(
        f"step_ms_small={results[0][0]:.1f} step_ms_large={results[-1][0]:.1f} before_ms_large={results[-1][1]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
