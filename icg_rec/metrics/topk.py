"""Top-k metrics for sampled candidate lists: NDCG@k, recall@k, hit rate@k.

Each row of `scores` / `relevance` is one list (say a user's held-out positive plus sampled
negatives). Equal scores are ordered pessimistically: a less relevant candidate goes first, so a
model that scores every candidate alike earns no credit from the order the candidates came in.
"""

from typing import Any

import numpy as np

from icg_rec.errors import SchemaError


def ndcg_at_k(relevance: Any, scores: Any, k: int) -> float:
    """Mean NDCG@k with linear gains: sum_i rel_i / log2(i + 2) over the top k, over the ideal order.

    Args:
        relevance: (n_lists, n_candidates) non-negative relevance (1 = clicked, 0 = sampled negative).
        scores: (n_lists, n_candidates) finite model scores.
        k: cut-off, >= 1 (lists shorter than k are scored on all their candidates).

    Returns:
        NDCG@k averaged over lists; equals `sklearn.metrics.ndcg_score` where scores hold no ties.
    """
    ranked, rel = _ranked_relevance(relevance, scores, k)
    discount = 1.0 / np.log2(np.arange(2, ranked.shape[1] + 2))  # (k,)
    ideal = -np.sort(-rel, axis=1)[:, : ranked.shape[1]]
    return float(np.mean((ranked @ discount) / (ideal @ discount)))


def recall_at_k(relevance: Any, scores: Any, k: int) -> float:
    """Mean fraction of a list's relevant candidates (relevance > 0) that reach its top k.

    Args:
        relevance: (n_lists, n_candidates) non-negative relevance.
        scores: (n_lists, n_candidates) finite model scores.
        k: cut-off, >= 1.

    Returns:
        Recall@k averaged over lists.
    """
    ranked, rel = _ranked_relevance(relevance, scores, k)
    return float(np.mean((ranked > 0).sum(axis=1) / (rel > 0).sum(axis=1)))


def hit_rate_at_k(relevance: Any, scores: Any, k: int) -> float:
    """Fraction of lists with at least one relevant candidate (relevance > 0) in the top k.

    Args:
        relevance: (n_lists, n_candidates) non-negative relevance.
        scores: (n_lists, n_candidates) finite model scores.
        k: cut-off, >= 1.

    Returns:
        Hit rate@k over lists.
    """
    ranked, _ = _ranked_relevance(relevance, scores, k)
    return float(np.mean((ranked > 0).any(axis=1)))


def _ranked_relevance(relevance: Any, scores: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """((n_lists, min(k, n_candidates)) relevance in ranked order, (n_lists, n_candidates) relevance)."""
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    rel = _matrix("relevance", relevance)
    s = _matrix("scores", scores)
    if rel.shape != s.shape:
        raise SchemaError(f"relevance and scores must have the same shape, got {rel.shape} and {s.shape}")
    if (rel < 0).any():
        raise SchemaError("relevance must be >= 0")
    if empty := np.flatnonzero((rel > 0).sum(axis=1) == 0).tolist():
        raise SchemaError(f"{len(empty)} list(s) hold no relevant candidate, first at row(s) {empty[:5]}")
    order = np.lexsort((rel, -s), axis=1)  # by score descending, then least relevant first
    return np.take_along_axis(rel, order[:, :k], axis=1), rel


def _matrix(name: str, values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or 0 in array.shape:
        raise SchemaError(
            f"{name} must be a non-empty (n_lists, n_candidates) matrix, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise SchemaError(f"{name} hold NaN/inf values at {np.argwhere(~np.isfinite(array))[:5].tolist()}")
    return array
