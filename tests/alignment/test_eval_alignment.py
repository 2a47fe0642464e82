import numpy as np
import pytest
import torch

# in-process: pytest runs from the repository root
from eval.alignment import other_cohort_users, paired_delta
from eval.alignment_movielens import poster_headroom
from icg_rec.alignment import ItemSet


def test_other_cohort_users_picks_the_same_rank_in_the_next_cohort_and_wraps():
    pair_users = torch.tensor([10, 11, 20, 21, 11])
    cohorts = np.array([0, 0, 3, 3, 0])
    wrong = other_cohort_users(pair_users, cohorts)
    assert wrong.tolist() == [20, 21, 10, 11, 21]


def test_paired_delta_clusters_the_interval_by_user():
    a = np.array([1.0, 3.0, 2.0, 2.0])
    b = np.zeros(4)
    users = np.array([0, 0, 1, 1])  # per-user means 2 and 2: no spread between users
    out = paired_delta(a, b, users)
    assert out == {"delta": 2.0, "ci95": [2.0, 2.0]}


def test_poster_headroom_scores_every_poster_for_each_pair():
    images = torch.zeros(3, 3, 2, 2)
    images[1] += 0.5
    images[2] += 1.0
    items = ItemSet(["a", "b", "c"], images, torch.tensor([7, 8, 9]))

    def judge(user_ids, covers, item_ids):  # brighter covers and higher user ids click more
        return covers.mean(dim=(1, 2, 3)) * 0.1 + user_ids * 0.01

    out = poster_headroom(judge, items, torch.tensor([0, 1]), torch.tensor([1, 2]))
    assert out["own_poster_ctr"] == pytest.approx(((0.0 + 0.01) + (0.05 + 0.02)) / 2)
    assert out["best_poster_ctr"] == pytest.approx(((0.1 + 0.01) + (0.1 + 0.02)) / 2)
    assert out["within_pair_sd"] == pytest.approx(0.05)
