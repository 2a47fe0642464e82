"""The interface every ranker follows, so that lift experiments swap LightGBM and TorchRec freely."""

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import polars as pl


@dataclass
class FeatureSpec:
    """Which columns of an interactions-with-features frame a ranker reads."""

    sparse: list[str] = field(
        default_factory=list
    )  # id columns (an int, or a pl.List of ints per row: TorchRec only)
    dense: list[str] = field(default_factory=list)  # float scalar columns
    embeddings: list[str] = field(default_factory=list)  # fixed-width float vector columns (pl.Array)
    label: str = "label"  # 1.0 click, 0.0 no click


class Ranker(Protocol):
    """p(click) from a feature frame; scikit-learn habits (fit returns self, state ends in `_`)."""

    def fit(
        self, train: pl.DataFrame, spec: FeatureSpec, valid: pl.DataFrame | None = None, seed: int = 0
    ) -> "Ranker": ...

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Returns p(click) as float64 of shape (n_rows,)."""
        ...
