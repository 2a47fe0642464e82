"""Load MovieLens with posters, then make the warm and the cold-item splits used for lift measurements.

Run: .venv/bin/python examples/movielens_splits.py   (data from ICG_REC_DATA_DIR or ../shared/data)
"""

import polars as pl

from icg_rec.data.movielens import load_movielens_with_posters
from icg_rec.data.splits import cold_item_split, per_user_temporal_split, sample_negatives

dataset = load_movielens_with_posters()  # 2,943 movies with a poster, 58,498 ratings, 610 users
ratings = dataset.interactions  # user_id, item_id, label (rating >= 4), timestamp, rating
print(f"{dataset.name}: {ratings.height} ratings, click rate {ratings['label'].mean():.3f}")

# Warm protocol: each user's last 20% of ratings by time are the test set.
train, test = per_user_temporal_split(ratings, test_fraction=0.2)
print(f"warm: train {train.height}, test {test.height}")

# Cold items: 20% of the movies are held out with all their ratings; users stay warm.
cold_train, cold_test = cold_item_split(ratings, item_fraction=0.2, seed=0)
print(
    f"cold: train {cold_train.height}, test {cold_test.height} on {cold_test['item_id'].n_unique()} unseen movies"
)

# Top-k evaluation: 100 unclicked movies per test click, never one the user rated in train.
negatives = sample_negatives(test, dataset.items, n_negatives=100, seed=0, exclude=train)
print(negatives.head(3).with_columns(pl.col("candidates").list.head(5)))
