import numpy as np
import polars as pl

from eval.rewards import tag_matrix  # in-process: `python -m pytest` runs from the repository root


def test_tag_matrix_is_a_sorted_multi_hot_of_the_text_tags():
    items = pl.DataFrame({"item_id": [0, 1, 2], "text": ["Drama", "Horror|Drama", ""]})
    np.testing.assert_array_equal(
        tag_matrix(items),  # columns: Drama, Horror
        np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float32),
    )
