"""The shared checks: columns, fitted state, id lookups."""

import numpy as np
import polars as pl
import pytest

from icg_rec.errors import SchemaError
from icg_rec.validation import check_columns, check_fitted, lookup, table_rows


def test_check_columns_names_the_missing_ones():
    with pytest.raises(
        SchemaError, match=r"log is missing column\(s\) \['label'\]; expected \['user_id', 'label'\]"
    ):
        check_columns(pl.DataFrame({"user_id": [1]}), ["user_id", "label"], "log")


def test_check_fitted_names_the_class():
    class Model:
        pass

    with pytest.raises(ValueError, match="Model is not fitted: call fit"):
        check_fitted(Model(), "net_")


def test_lookup_and_table_rows():
    positions, known = lookup(np.array([10, 20, 30]), np.array([20, 5, 30, 99]))
    assert known.tolist() == [True, False, True, False]
    assert positions[known].tolist() == [1, 2]
    assert table_rows(np.array([10, 20, 30]), np.array([20, 5, 30, 99])).tolist() == [2, 0, 3, 0]


def test_lookup_in_an_empty_table_knows_nothing():
    positions, known = lookup(np.zeros(0, dtype=np.int64), np.array([1, 2]))
    assert positions.tolist() == [0, 0] and known.tolist() == [False, False]
