"""Builders for torchrec's DLRM and DLRM_DCN from one config; cover features are a config switch."""

from dataclasses import dataclass, field

import torch
from torch import nn

from icg_rec.doctor import missing_torchrec_message

try:
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType
    from torchrec.models.dlrm import DLRM, DLRM_DCN
except (ImportError, OSError) as error:  # a missing or mixed FBGEMM build
    raise ImportError(missing_torchrec_message(error)) from error

ARCHS = ("dlrm", "dlrm_dcn")
SHARDINGS = ("table_wise", "row_wise")


@dataclass
class TorchRecConfig:
    arch: str = "dlrm"  # "dlrm" (dot interaction) or "dlrm_dcn" (low-rank cross network)
    cover_features: bool = False  # add the cover store's vector + has_cover flag to the dense input
    embedding_dim: int = 16  # width of every id embedding (DLRM needs one width for all tables)
    dense_hidden: list[int] = field(
        default_factory=lambda: [64]
    )  # dense MLP; a last layer of embedding_dim follows
    over_hidden: list[int] = field(
        default_factory=lambda: [64, 32]
    )  # over MLP; a last layer of width 1 follows
    dcn_num_layers: int = 2  # cross layers (dlrm_dcn only)
    dcn_low_rank_dim: int = 8  # rank of each cross layer (dlrm_dcn only)
    epochs: int = 10  # the most epochs; early stopping on validation AUC may stop sooner
    patience: int = 2  # epochs without a better validation AUC before stopping
    batch_size: int = 512  # global batch (split across processes under DMP)
    dense_lr: float = 1e-3  # Adam on MLP weights
    sparse_lr: float = 0.05  # row-wise Adagrad on embedding tables, fused into backward
    progress: bool = True  # tqdm bar per epoch (rank 0 only)
    sharding: str = "table_wise"  # under torchrun: "table_wise", or "row_wise" (device="cuda" only)


def build_dlrm(
    config: TorchRecConfig,
    table_sizes: dict[str, int],
    dense_in_features: int,
    mean_pooled: list[str] | tuple[str, ...] = (),
) -> nn.Module:
    """A DLRM or DLRM_DCN with one embedding table per sparse feature, on CPU.

    Args:
        config: architecture fields (arch, embedding_dim, dense_hidden, over_hidden, dcn_*).
        table_sizes: sparse feature name -> rows of its table (row 0 = unknown id).
        dense_in_features: width of the dense input (covers included when switched on).
        mean_pooled: features holding a list of ids per row, whose embeddings are averaged (the
            others are summed: one id per row).

    Returns:
        The model; call it as model(dense (B, dense_in_features), kjt) -> logits (B, 1).
    """
    if config.arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {config.arch!r}")
    if dense_in_features < 1:
        raise ValueError(
            "DLRM needs at least one dense input: give a dense or embedding column, or cover features"
        )
    tables = [
        EmbeddingBagConfig(
            name=f"t_{name}",
            embedding_dim=config.embedding_dim,
            num_embeddings=rows,
            feature_names=[name],
            pooling=PoolingType.MEAN if name in mean_pooled else PoolingType.SUM,
        )
        for name, rows in table_sizes.items()
    ]
    ebc = EmbeddingBagCollection(tables=tables, device=torch.device("cpu"))
    dense_sizes = [*config.dense_hidden, config.embedding_dim]
    over_sizes = [*config.over_hidden, 1]
    if config.arch == "dlrm":
        return DLRM(ebc, dense_in_features, dense_sizes, over_sizes)
    return DLRM_DCN(
        ebc, dense_in_features, dense_sizes, over_sizes, config.dcn_num_layers, config.dcn_low_rank_dim
    )
