"""`device` of the TorchRec ranker: CPU default, row-wise sharding only with CUDA, clear refusals."""

import numpy as np
import polars as pl
import pytest
import torch

from icg_rec.device import DeviceError
from icg_rec.ranking.base import FeatureSpec
from icg_rec.ranking.dlrm import TorchRecConfig
from icg_rec.ranking.torchrec_ranker import TorchRecRanker

SPEC = FeatureSpec(sparse=["user_id", "item_id"], dense=["x"])
CONFIG = TorchRecConfig(epochs=1, batch_size=32, progress=False)


def _frame() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    n = 96
    return pl.DataFrame(
        {"user_id": rng.integers(0, 8, n), "item_id": rng.integers(0, 12, n), "x": rng.normal(size=n),
         "label": rng.integers(0, 2, n).astype(float)}
    )  # fmt: skip


def test_explicit_cpu_equals_the_default_and_loads_back(tmp_path):
    frame = _frame()
    default = TorchRecRanker(CONFIG).fit(frame, SPEC, seed=1)
    cpu = TorchRecRanker(CONFIG, device="cpu").fit(frame, SPEC, seed=1)
    np.testing.assert_array_equal(cpu.predict(frame), default.predict(frame))
    loaded = TorchRecRanker.load(cpu.save(tmp_path / "r"), device="cpu")
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.predict(frame), default.predict(frame))


def test_row_wise_sharding_needs_cuda_and_unknown_shardings_are_refused():
    with pytest.raises(DeviceError, match="sharding='row_wise' needs device='cuda'"):
        TorchRecRanker(TorchRecConfig(sharding="row_wise", progress=False)).fit(_frame(), SPEC)
    with pytest.raises(ValueError, match="sharding must be one of"):
        TorchRecRanker(TorchRecConfig(sharding="column_wise", progress=False)).fit(_frame(), SPEC)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_a_missing_device_is_refused_at_fit_and_load(tmp_path):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        TorchRecRanker(CONFIG, device="cuda").fit(_frame(), SPEC)
    folder = TorchRecRanker(CONFIG).fit(_frame(), SPEC).save(tmp_path / "r")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        TorchRecRanker.load(folder, device="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_every_heavy_command_takes_device_and_refuses_a_missing_one(tmp_path):
    from icg_rec.cli import build_parser

    _frame().write_parquet(tmp_path / "train.parquet")
    parser = build_parser()
    args = parser.parse_args(
        ["ranker", "fit", "--train", str(tmp_path / "train.parquet"), "--sparse", "user_id", "item_id",
         "--dense", "x", "--out", str(tmp_path / "r"), "--device", "cuda"]
    )  # fmt: skip
    with pytest.raises(DeviceError, match="CUDA is not available"):
        args.run(args)
    commands = [
        ["refresh", "--pipeline", "p", "--cohorts", "c", "--items", "i", "--out", "o", "--dtype", "bfloat16",
         "--compile", "reduce-overhead", "--channels-last", "--fuse-qkv", "--writers", "2"],
        ["generator", "align", "--pipeline", "p", "--out", "o", "--dtype", "bfloat16"],
        ["generator", "train", "--out", "o", "--dtype", "bfloat16"],
        ["rewards", "train", "--out", "o"],
    ]  # fmt: skip
    for command in commands:
        assert parser.parse_args([*command, "--device", "cuda:1"]).device == "cuda:1"
