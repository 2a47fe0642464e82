import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from icg_rec.errors import SchemaError
from icg_rec.metrics import hit_rate_at_k, ndcg_at_k, recall_at_k

# two sampled lists: list 0 ranks its positive 2nd, list 1 holds two positives ranked 1st and 4th
RELEVANCE = [[1, 0, 0, 0], [1, 0, 0, 1]]
SCORES = [[0.5, 0.9, 0.1, 0.2], [0.8, 0.3, 0.2, 0.1]]


def test_ndcg_hand_case():
    list0 = (1 / np.log2(3)) / 1.0
    list1 = (1.0 + 1 / np.log2(5)) / (1.0 + 1 / np.log2(3))
    assert ndcg_at_k(RELEVANCE, SCORES, 4) == pytest.approx((list0 + list1) / 2)
    assert ndcg_at_k(RELEVANCE, SCORES, 1) == pytest.approx(0.5)


def test_recall_and_hit_rate_hand_cases():
    assert recall_at_k(RELEVANCE, SCORES, 1) == pytest.approx((0.0 + 0.5) / 2)
    assert recall_at_k(RELEVANCE, SCORES, 2) == pytest.approx((1.0 + 0.5) / 2)
    assert hit_rate_at_k(RELEVANCE, SCORES, 1) == 0.5
    assert hit_rate_at_k(RELEVANCE, SCORES, 2) == 1.0
    assert hit_rate_at_k(RELEVANCE, SCORES, 100) == 1.0  # k beyond the list: the whole list


def test_ties_rank_the_relevant_candidate_last():
    relevance, scores = [[1, 0, 0]], [[0.3, 0.3, 0.3]]  # a constant model earns nothing from the order
    assert hit_rate_at_k(relevance, scores, 2) == 0.0
    assert ndcg_at_k(relevance, scores, 3) == pytest.approx(0.5)  # relevant at rank 3: 1 / log2(4)


def test_ndcg_equals_sklearn_on_graded_relevance_without_ties():
    rng = np.random.default_rng(0)
    relevance = rng.integers(0, 4, (20, 9))
    relevance[:, 0] = 1
    scores = rng.random((20, 9))
    assert ndcg_at_k(relevance, scores, 5) == pytest.approx(ndcg_score(relevance, scores, k=5))


@pytest.mark.parametrize("metric", [ndcg_at_k, recall_at_k, hit_rate_at_k])
@pytest.mark.parametrize(
    ("relevance", "scores", "k", "error", "message"),
    [
        (RELEVANCE, SCORES, 0, ValueError, "k must be >= 1, got 0"),
        (RELEVANCE, SCORES, -2, ValueError, "k must be >= 1"),
        (RELEVANCE, [[0.5, 0.9, 0.1]], 1, SchemaError, "same shape"),
        (
            RELEVANCE,
            [[0.5, np.nan, 0.1, 0.2], [0.8, 0.3, 0.2, 0.1]],
            1,
            SchemaError,
            r"NaN/inf values at \[\[0, 1\]\]",
        ),
        ([[0, 0, 0, 0], [1, 0, 0, 0]], SCORES, 1, SchemaError, r"1 list\(s\) hold no relevant candidate"),
        ([[1, -1, 0, 0], [1, 0, 0, 0]], SCORES, 1, SchemaError, "relevance must be >= 0"),
        ([1, 0, 0], [0.1, 0.2, 0.3], 1, SchemaError, r"matrix, got shape \(3,\)"),
    ],
)
def test_bad_inputs_raise(metric, relevance, scores, k, error, message):
    with pytest.raises(error, match=message):
        metric(relevance, scores, k)
