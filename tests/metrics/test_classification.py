import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from icg_rec.errors import SchemaError
from icg_rec.metrics import GAUC, auc, format_relaimpr, gauc, logloss, relaimpr, uauc


@st.composite
def click_rows(draw, max_rows: int = 40):
    """(labels, scores, weights, groups) with both classes, heavy ties, mixed signs and -0.0."""
    n = draw(st.integers(2, max_rows))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    labels[:2] = [0, 1]
    # few distinct values force ties; the scale moves them across signs, subnormals and large floats
    levels = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    scale = draw(st.sampled_from([1.0, 0.1, 5e-324, 1e300, -1.0]))
    scores = np.array(levels, dtype=np.float64) * scale
    scores[scores == 0] = draw(st.sampled_from([0.0, -0.0]))
    weights = np.array(draw(st.lists(st.floats(0.01, 10.0), min_size=n, max_size=n)))
    groups = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))) * 7 - 3
    return labels, scores, weights, groups


@settings(max_examples=60, deadline=None)
@given(click_rows())
def test_auc_equals_sklearn_with_ties_and_weights(rows):
    labels, scores, weights, _ = rows
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    expected = roc_auc_score(labels, scores, sample_weight=weights)
    assert auc(labels, scores, weights) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(click_rows(), st.booleans())
def test_auc_on_continuous_scores_equals_sklearn(rows, logits):
    labels = rows[0]
    scores = np.random.default_rng(len(labels)).normal(size=len(labels))
    scores = scores if logits else 1.0 / (1.0 + np.exp(-scores))
    assert auc(labels, scores, rows[2]) == pytest.approx(
        roc_auc_score(labels, scores, sample_weight=rows[2]), abs=1e-12
    )


def per_user_loop(labels, scores, groups, weights=None, unweighted_mean=False):
    """Slow reference: sklearn's AUC per user, users with one class skipped."""
    weights = np.ones(len(labels)) if weights is None else weights
    values, user_weights, skipped = [], [], 0
    for user in np.unique(groups):
        rows = groups == user
        if labels[rows].min() == labels[rows].max():
            skipped += 1
            continue
        values.append(roc_auc_score(labels[rows], scores[rows], sample_weight=weights[rows]))
        user_weights.append(weights[rows].sum())
    mean = np.mean(values) if unweighted_mean else np.average(values, weights=user_weights)
    return mean, len(values), skipped


@settings(max_examples=30, deadline=None)
@given(click_rows())
def test_gauc_and_uauc_equal_a_per_user_sklearn_loop(rows):
    labels, scores, weights, groups = rows
    if all(labels[groups == u].min() == labels[groups == u].max() for u in np.unique(groups)):
        with pytest.raises(SchemaError, match="none of the"):
            gauc(labels, scores, groups)
        return
    for w in (None, weights):
        value, n_groups, skipped = per_user_loop(labels, scores, groups, w)
        result = gauc(labels, scores, groups, w)
        assert result.value == pytest.approx(value, abs=1e-12)
        assert (result.n_groups, result.n_skipped) == (n_groups, skipped)
        value, _, _ = per_user_loop(labels, scores, groups, w, unweighted_mean=True)
        assert uauc(labels, scores, groups, w).value == pytest.approx(value, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(click_rows())
def test_logloss_equals_sklearn(rows):
    labels, scores, weights, _ = rows
    probs = np.abs(scores) / (np.abs(scores).max() or 1.0)  # in [0, 1], with exact 0s and 1s
    assert logloss(labels, probs) == pytest.approx(log_loss(labels, probs), rel=1e-12)
    assert logloss(labels, probs, weights) == pytest.approx(
        log_loss(labels, probs, sample_weight=weights), rel=1e-12
    )


def test_gauc_weights_users_by_impressions_and_counts_skipped_users():
    labels = np.array([1, 0, 1, 0, 0, 0, 1, 1, 0])
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.5, 0.4, 0.3, 0.3, 0.3])
    groups = np.array(["a", "a", "b", "b", "b", "c", "d", "d", "d"])
    result = gauc(labels, scores, groups)
    # a (2 rows) AUC 1; b (3 rows) AUC 0; c one class; d (3 rows) all tied: AUC 0.5
    assert result == GAUC(value=(2 * 1.0 + 3 * 0.0 + 3 * 0.5) / 8, n_groups=3, n_skipped=1)
    assert uauc(labels, scores, groups) == GAUC(value=0.5, n_groups=3, n_skipped=1)


def test_metrics_accept_polars_series_and_torch_tensors():
    labels, scores = [0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.9]
    expected = roc_auc_score(labels, scores)
    assert auc(pl.Series(labels), pl.Series(scores)) == expected
    assert auc(torch.tensor(labels), torch.tensor(scores, dtype=torch.float32)) == pytest.approx(expected)
    assert gauc(pl.Series(labels), pl.Series(scores), pl.Series([1] * 5)).value == expected


@pytest.mark.parametrize("base", [0.5, 0.45])
def test_relaimpr_is_undefined_for_a_baseline_no_better_than_random(base):
    assert relaimpr(0.55, base) is None  # (0.05 / -0.05) - 1 would read -200% for a better model
    assert format_relaimpr(relaimpr(0.55, base)) == "undefined (baseline AUC <= 0.5)"
    assert format_relaimpr(relaimpr(0.75, 0.7)) == "+25.00%"


def test_relaimpr_hand_case():
    assert relaimpr(0.75, 0.7) == pytest.approx(0.25)  # (0.25 / 0.2) - 1
    assert relaimpr(0.7, 0.7) == 0.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: auc([0, 1, 1], [0.1, 0.2]), "same length"),
        (lambda: auc([0, 1], [0.1, 0.2], [1.0]), "same length"),
        (lambda: gauc([0, 1], [0.1, 0.2], [1, 1, 1]), "same length"),
        (
            lambda: auc([0, 1, 1], [0.1, np.nan, 0.3]),
            r"scores hold 1 NaN/inf value\(s\), first at row\(s\) \[1\]",
        ),
        (lambda: auc([0, 1, 1], [0.1, np.inf, 0.3]), "NaN/inf"),
        (
            lambda: auc([0, np.nan, 1], [0.1, 0.2, 0.3]),
            r"labels must be 0 or 1, got \[nan\] at row\(s\) \[1\]",
        ),
        (lambda: auc([0, 2, 1], [0.1, 0.2, 0.3]), r"labels must be 0 or 1, got \[2\]"),
        (lambda: auc([1, 1, 1], [0.1, 0.2, 0.3]), "single class"),
        (lambda: auc([0, 1, 1], [0.1, 0.2, 0.3], [1.0, 0.0, 0.0]), "single class"),
        (lambda: auc([0, 1], [0.1, 0.2], [1.0, -1.0]), "weights must be >= 0"),
        (lambda: auc([], []), "empty"),
        (lambda: auc([[0, 1]], [[0.1, 0.2]]), "1-D"),
        (lambda: auc([0, 1], ["a", "b"]), "numeric"),
        (lambda: gauc([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]), "none of the 4 groups"),
        (lambda: gauc([0, 1], [0.1, 0.2], pl.Series([1, None])), "missing id"),
        (lambda: uauc([0, 1], [np.nan, 0.2], [1, 1]), "NaN"),
        (lambda: logloss([0, 1], [0.1, 1.2]), r"probs must lie in \[0, 1\], got \[1.2\]"),
        (lambda: logloss([0, 1], [-0.1, 0.5]), "probs must lie"),
        (lambda: logloss([0, 1], [np.nan, 0.5]), "NaN"),
        (lambda: logloss([0, 1], [0.1, 0.5], [0.0, 0.0]), "weights sum to 0"),
    ],
)
def test_bad_inputs_raise_schema_errors_that_say_what_is_wrong(call, message):
    with pytest.raises(SchemaError, match=message):
        call()


@pytest.mark.parametrize(("model", "base", "message"), [(1.2, 0.7, "auc_model"), (0.7, -0.1, "auc_base")])
def test_relaimpr_rejects_bad_aucs(model, base, message):
    with pytest.raises(ValueError, match=message):
        relaimpr(model, base)


@pytest.mark.parametrize("scale", [1e200, 1e300, 1e-200])
def test_weighted_metrics_do_not_depend_on_the_scale_of_the_weights(scale):
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 200), rng.normal(size=200)
    groups, weights = rng.integers(0, 10, 200), rng.uniform(0.5, 2.0, 200)
    probs = 1 / (1 + np.exp(-scores))
    assert auc(labels, scores, weights * scale) == pytest.approx(auc(labels, scores, weights), abs=1e-12)
    for fn in (gauc, uauc):
        assert fn(labels, scores, groups, weights * scale).value == pytest.approx(
            fn(labels, scores, groups, weights).value, abs=1e-12
        )
    assert logloss(labels, probs, weights * scale) == pytest.approx(
        logloss(labels, probs, weights), rel=1e-12
    )
