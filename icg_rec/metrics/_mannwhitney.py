"""Exact, tie-aware Mann-Whitney sums behind auc / gauc / uauc and their bootstraps.

Each row becomes one uint64 key: (group id | score order | label bit), so a plain `np.sort` (a SIMD
sort of 8-byte integers, several times faster than an argsort) lines rows up by group, then score,
with negatives before positives inside a tie. For a positive at sorted position p, the negatives of
its group that sort before it are exactly those with a lower or equal score; subtracting half of the
tied pairs gives the Mann-Whitney statistic with average ranks. Weighted sums keep the same layout
and carry the weights along with an argsort.
"""

from dataclasses import dataclass

import numpy as np

_ONE = np.uint64(1)


@dataclass
class SortedRows:
    """Rows sorted by (group, score, label); built once, reused with any row weights."""

    keys: np.ndarray  # (n,) uint64 sorted keys, label in bit 0
    order: np.ndarray | None  # (n,) original row of each sorted key; None when no weights follow
    starts: np.ndarray  # (G,) sorted position where each group begins
    tie_neg: np.ndarray  # (R,) first sorted position of each tie run that mixes both classes
    tie_mid: np.ndarray  # (R,) position of that run's first positive (its negatives come first)
    tie_end: np.ndarray  # (R,) one past the run's last position
    tie_group: np.ndarray  # (R,) group of each mixed tie run


def score_keys(scores: np.ndarray) -> np.ndarray:
    """Order-preserving uint64 keys of float64 scores that all share one sign (bit 63 is ignored).

    Non-negative doubles order like their bit patterns; negative ones like the complement of
    theirs. Within one sign bit 63 is constant, so `sort_rows` may shift it out for the label bit;
    that also maps -0.0 onto +0.0, which are equal scores with different bit patterns.
    """
    bits = scores.view(np.uint64)
    return ~bits if len(scores) and scores[0] < 0 else bits


def sort_rows(key_hi: np.ndarray, labels: np.ndarray, starts: np.ndarray, with_order: bool) -> SortedRows:
    """Sorts rows by `key_hi` (bit 63 dropped; ties = equal scores in one group), negatives first in a tie.

    Args:
        key_hi: (n,) uint64 keys whose low 63 bits order rows by (group, score).
        labels: (n,) bool labels.
        starts: (G,) sorted position where each group begins (known from the group sizes).
        with_order: also return the permutation, needed to carry row weights.

    Returns:
        The sorted rows, with the tie runs that mix both classes located.
    """
    keys = key_hi << _ONE
    keys |= labels
    order = None
    if with_order:
        order = np.argsort(keys)
        keys = keys[order]
    else:
        keys.sort()
    # a negative directly followed by a positive of the same score: the keys differ in bit 0 only
    mixed = np.flatnonzero((keys[1:] ^ keys[:-1]) == _ONE)
    tie_neg = np.searchsorted(keys, keys[mixed], side="left")
    tie_end = np.searchsorted(keys, keys[mixed + 1], side="right")
    tie_group = np.searchsorted(starts, mixed, side="right") - 1
    return SortedRows(keys, order, starts, tie_neg, mixed + 1, tie_end, tie_group)


def count_terms(rows: SortedRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unweighted per-group sums, in exact integers.

    Returns:
        (twice_u, n_pos, n_neg), each (G,) int64: twice_u is 2 x the number of (positive, negative)
        pairs where the positive scores higher, ties counted as one half.
    """
    n = len(rows.keys)
    positives = np.flatnonzero(rows.keys.astype(np.uint8) & 1)  # sorted positions of the positives
    ends = np.append(rows.starts[1:], n)
    first = np.searchsorted(positives, rows.starts)  # index of each group's first positive
    last = np.append(first[1:], len(positives))
    n_pos = last - first
    n_neg = ends - rows.starts - n_pos
    cum = np.concatenate([[0], np.cumsum(positives)])
    # the j-th positive of a group at position p has p - start - j rows of its group before it, all negative
    below = cum[last] - cum[first] - n_pos * rows.starts - n_pos * (n_pos - 1) // 2
    tied = np.bincount(
        rows.tie_group,
        weights=(rows.tie_mid - rows.tie_neg) * (rows.tie_end - rows.tie_mid),
        minlength=len(rows.starts),
    )
    return 2 * below - tied.astype(np.int64), n_pos, n_neg


def weighted_terms(rows: SortedRows, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted per-group sums for a batch of weight vectors.

    Args:
        rows: sorted rows.
        weights: (B, n) row weights in sorted order (original weights indexed by `rows.order`).

    Returns:
        (twice_u, w_pos, w_neg), each (B, G): twice_u is 2 x the sum of w_i w_j over (positive i,
        negative j) pairs where i scores higher, ties counted as one half.
    """
    w_pos = weights * (rows.keys & _ONE).astype(bool)  # (B, n)
    w_neg = weights - w_pos
    neg_upto = _segment_cumsum(w_neg, rows.starts)  # (B, n) negative weight at or below each row
    below = np.add.reduceat(w_pos * neg_upto, rows.starts, axis=1)  # (B, G)
    twice_u = 2.0 * below
    if len(rows.tie_mid):
        pos_upto = _segment_cumsum(w_pos, rows.starts)
        tie_neg = neg_upto[:, rows.tie_mid - 1] - neg_upto[:, rows.tie_neg] + w_neg[:, rows.tie_neg]
        tie_pos = pos_upto[:, rows.tie_end - 1] - pos_upto[:, rows.tie_mid] + w_pos[:, rows.tie_mid]
        np.subtract.at(twice_u, (slice(None), rows.tie_group), tie_neg * tie_pos)
    return twice_u, np.add.reduceat(w_pos, rows.starts, axis=1), np.add.reduceat(w_neg, rows.starts, axis=1)


def _segment_cumsum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative sum along axis 1 that restarts at each group start.

    Subtracting the previous group's total at each start keeps the running sum at group scale, so
    no large global total is later cancelled (which would cost precision in small groups).
    """
    if len(starts) == 1:
        return np.cumsum(x, axis=1)
    totals = np.add.reduceat(x, starts, axis=1)  # (B, G)
    x = x.copy()
    x[:, starts[1:]] -= totals[:, :-1]
    return np.cumsum(x, axis=1)
