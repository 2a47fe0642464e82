"""Load time of `load_movielens` on a synthetic ml-latest-sized CSV, beside a bare typed `pl.read_csv`.

Run: .venv/bin/python -m eval.bench_movielens --rows 5000000
The last line: `rows=N load_s=A read_csv_s=B overhead=A/B split_s=C negatives_s=D`.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from icg_rec.data.movielens import load_movielens
from icg_rec.data.splits import per_user_temporal_split, sample_negatives


def write_synthetic(folder: Path, n_rows: int, n_users: int, n_items: int, seed: int) -> None:
    """Writes ratings.csv / movies.csv in the ml-latest layout, with random (user, item, rating, time)."""
    rng = np.random.default_rng(seed)
    pl.DataFrame(
        {
            "userId": rng.integers(1, n_users + 1, n_rows),
            "movieId": rng.integers(1, n_items + 1, n_rows),
            "rating": rng.integers(1, 11, n_rows) / 2,
            "timestamp": rng.integers(800_000_000, 1_700_000_000, n_rows),
        }
    ).unique(["userId", "movieId", "timestamp"]).write_csv(folder / "ratings.csv")
    ids = np.arange(1, n_items + 1)
    pl.DataFrame(
        {"movieId": ids, "title": [f"Movie {i} (2000)" for i in ids], "genres": "Drama|Comedy"}
    ).write_csv(folder / "movies.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ml-synthetic"
        folder.mkdir()
        write_synthetic(folder, args.rows, n_users=args.rows // 100, n_items=80_000, seed=args.seed)
        start = time.perf_counter()
        dataset = load_movielens(folder)
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        pl.read_csv(
            folder / "ratings.csv",
            schema={"userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float64, "timestamp": pl.Int64},
        )
        read_s = time.perf_counter() - start
    start = time.perf_counter()
    train, test = per_user_temporal_split(dataset.interactions)
    split_s = time.perf_counter() - start
    start = time.perf_counter()
    sample_negatives(test, dataset.items, n_negatives=100, seed=args.seed, exclude=train)
    negatives_s = time.perf_counter() - start
    n = dataset.interactions.height
    print(
        f"load_movielens (parse + validate) on {n} rows: {load_s:.2f} s; bare typed pl.read_csv: {read_s:.2f} s"
    )
    print(
        f"per_user_temporal_split: {split_s:.2f} s; sample_negatives(100 per test click): {negatives_s:.2f} s"
    )
    print(
        f"rows={n} load_s={load_s:.2f} read_csv_s={read_s:.2f} overhead={load_s / read_s:.1f} "
        f"split_s={split_s:.2f} negatives_s={negatives_s:.2f}"
    )


if __name__ == "__main__":
    main()
