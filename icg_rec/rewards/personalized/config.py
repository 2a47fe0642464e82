"""The personalized reward model's settings and what its cover tower reads."""

from dataclasses import dataclass

import numpy as np

TOWERS = ("embedding", "cnn")


@dataclass
class PersonalizedConfig:
    cover_tower: str = "embedding"  # "embedding": MLP on frozen image-encoder features; "cnn": CNN on pixels
    image_size: int = 64  # cnn tower: side of the square covers it reads, in pixels
    cnn_channels: int = 16  # cnn tower: channels of the first conv layer (doubled twice)
    colour_bins: int = 12  # cnn tower: hue bins of the fixed colour_statistics input (0 = none)
    dim: int = 16  # width of the shared user / cover space
    n_tastes: int = 16  # learned taste vectors a user's history picks among (see the module docstring)
    hidden: int = 64  # hidden width of the embedding tower's MLP
    dropout: float = 0.3  # dropout inside the cover tower
    use_user: bool = True  # False: non-personalized cover model (no user side at all)
    use_history: bool = True  # False: every user gets the prior mixture of tastes (id embedding only)
    use_item_bias: bool = True  # a learned bias per training item id (0 for items never seen in fit)
    user_dropout: float = 0.1  # share of training rows shown as the generic user (trains row 0)
    history_folds: int = 5  # out-of-fold history for training rows
    pairwise_weight: float = 0.0  # weight of the within-user Bradley-Terry term added to pointwise BCE
    epochs: int = 6  # passes over the training rows (the best epoch on the validation slice is kept)
    batch_size: int = 1024  # training rows per step
    lr: float = 3e-3  # AdamW learning rate
    weight_decay: float = 1e-2  # AdamW weight decay
    user_l2: float = 1e-1  # L2 penalty on the id embedding and bias of each user in a batch
    valid_fraction: float = 0.1  # each user's latest share of rows, for early stopping and calibration


@dataclass
class CoverInputs:
    """What the reward model's cover tower reads for a set of items (not the TorchRec `icg_rec.features.CoverFeatures`)."""

    item_ids: np.ndarray  # (n,) int64
    images: np.ndarray  # (n, d) frozen image-encoder features ("embedding") or (n, 3, S, S) pixels ("cnn")
    titles: np.ndarray | None = None  # (n, t) title embeddings, optional
