import numpy as np
import polars as pl
import pytest
import torch
from torchmetrics.functional.classification import binary_calibration_error

from icg_rec.errors import SchemaError
from icg_rec.metrics import calibration_table, ece

LABELS = [0, 1, 1, 0, 1]
PROBS = [0.05, 0.15, 0.95, 0.55, 1.0]


def test_calibration_table_hand_case():
    table = calibration_table(LABELS, PROBS, n_bins=2)
    assert table["bin_lo"].to_list() == [0.0, 0.5]
    assert table["count"].to_list() == [2, 3]  # 1.0 falls in the last bin
    assert table["predicted"].to_list() == pytest.approx([0.1, 2.5 / 3])
    assert table["observed"].to_list() == pytest.approx([0.5, 2 / 3])


def test_empty_bins_are_null_not_zero():
    table = calibration_table(LABELS, PROBS, n_bins=10)
    assert table.height == 10
    assert table["count"].sum() == 5
    assert table.filter(table["count"] == 0)["observed"].null_count() == 10 - 4


def test_ece_hand_case():
    expected = 2 / 5 * abs(0.1 - 0.5) + 3 / 5 * abs(2.5 / 3 - 2 / 3)
    assert ece(LABELS, PROBS, n_bins=2) == pytest.approx(expected)
    assert ece([0, 1], [0.0, 1.0], n_bins=10) == 0.0


@pytest.mark.parametrize("fn", [calibration_table, ece])
@pytest.mark.parametrize(
    ("labels", "probs", "n_bins", "error", "message"),
    [
        ([0, 1], [0.2, 1.5], 10, SchemaError, r"probs must lie in \[0, 1\]"),
        ([0, 1], [0.2, np.nan], 10, SchemaError, "NaN"),
        ([0, 1, 1], [0.2, 0.3], 10, SchemaError, "same length"),
        ([0, 3], [0.2, 0.3], 10, SchemaError, "labels must be 0 or 1"),
        ([0, 1], [0.2, 0.3], 0, ValueError, "n_bins must be an int >= 1"),
    ],
)
def test_bad_inputs_raise(fn, labels, probs, n_bins, error, message):
    with pytest.raises(error, match=message):
        fn(labels, probs, n_bins)


@pytest.mark.parametrize("n_bins", range(1, 101))
def test_a_probability_of_exactly_b_over_n_opens_bin_b(n_bins):
    probs = [b / n_bins for b in range(n_bins + 1)]
    table = calibration_table([0] * len(probs), probs, n_bins)
    assert table["count"].to_list() == [1] * (n_bins - 1) + [2]  # 1.0 joins the last bin
    np.testing.assert_array_equal(table["bin_lo"].to_numpy(), probs[:-1])


def test_the_docstring_bins_of_0_3_0_6_0_7():
    table = calibration_table([1, 0, 1], [0.3, 0.6, 0.7], n_bins=10)
    assert table.filter(pl.col("count") > 0)["bin_lo"].to_list() == [0.3, 0.6, 0.7]


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_ece_equals_torchmetrics_off_the_edges(n_bins):
    rng = np.random.default_rng(n_bins)
    probs = rng.uniform(0.0, 1.0, 5000)  # no value lands on an edge: both binnings agree
    labels = (rng.uniform(size=5000) < probs**1.3).astype(np.int64)
    expected = binary_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels), n_bins, norm="l1")
    assert ece(labels, probs, n_bins) == pytest.approx(float(expected), abs=1e-12)
