import os
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore
from icg_rec.ranking.base import FeatureSpec
from icg_rec.ranking.dlrm import TorchRecConfig
from icg_rec.ranking.torchrec_ranker import TorchRecRanker

CONFIG = TorchRecConfig(
    cover_features=True, epochs=2, batch_size=50, progress=False, dense_lr=1e-2, sparse_lr=0.1
)


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else str(value)


def _data(tmp_path: Path, torchrun: list[str]) -> tuple[pl.DataFrame, CoverEmbeddingStore, list[str]]:
    """A small log and cover store written to tmp_path, and the torchrun command that fits on them."""
    rng = np.random.default_rng(0)
    n = 245  # the last global batch (45 rows) splits unevenly, 23 / 22
    users, items = rng.integers(0, 15, n), rng.integers(0, 25, n)
    covers = rng.normal(size=(25, 4)).astype(np.float32)
    label = ((rng.normal(size=(15, 4))[users] * covers[items]).sum(axis=1) > 0).astype(float)
    frame = pl.DataFrame({"user_id": users, "item_id": items, "label": label, "x": rng.normal(size=n)})
    store = CoverEmbeddingStore().build(np.arange(25), np.full(25, DEFAULT_COHORT), covers)
    frame.write_parquet(tmp_path / "train.parquet", row_group_size=60)
    store.save(tmp_path / "store")
    fields = "\n".join(f"{k} = {_toml(v)}" for k, v in vars(CONFIG).items())
    (tmp_path / "config.toml").write_text(fields + "\n")
    command = [
        *torchrun, "-m", "icg_rec.cli", "ranker", "fit",
        "--train", str(tmp_path / "train.parquet"), "--sparse", "user_id", "item_id", "--dense", "x",
        "--config", str(tmp_path / "config.toml"), "--cover-store", str(tmp_path / "store"),
        "--out", str(tmp_path / "dmp"), "--seed", "3",
    ]  # fmt: skip
    return frame, store, command


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 processes on a small CPU: no thread oversubscription
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_process_dmp_matches_single_process(tmp_path, torchrun):
    frame, store, command = _data(tmp_path, torchrun)
    _run(command)
    spec = FeatureSpec(sparse=["user_id", "item_id"], dense=["x"])
    single = TorchRecRanker(CONFIG, cover_store=store).fit(frame, spec, seed=3)
    sharded = TorchRecRanker.load(tmp_path / "dmp")
    assert sharded.history_[-1]["train_logloss"] == pytest.approx(
        single.history_[-1]["train_logloss"], abs=1e-5
    )
    # summation order differs between 1 and 2 processes (float32 rounding, amplified by Adam): ~1e-4
    np.testing.assert_allclose(sharded.predict(frame), single.predict(frame), atol=5e-4)
    other_seed = TorchRecRanker(CONFIG, cover_store=store).fit(frame, spec, seed=4).predict(frame)
    assert np.abs(other_seed - single.predict(frame)).max() > 1e-2  # the tolerance above is meaningful


def test_two_process_streaming_matches_single_process_streaming(tmp_path, torchrun):
    frame, store, command = _data(tmp_path, torchrun)
    _run([*command, "--stream"])
    spec = FeatureSpec(sparse=["user_id", "item_id"], dense=["x"])
    single = TorchRecRanker(CONFIG, cover_store=store).fit_parquet(
        tmp_path / "train.parquet", spec, seed=3, read_rows=50
    )
    sharded = TorchRecRanker.load(tmp_path / "dmp")
    assert single.fit_counts_ == sharded.fit_counts_  # summed over the processes
    assert single.fit_counts_["rows"] == 245
    assert sharded.history_[-1]["train_logloss"] == pytest.approx(
        single.history_[-1]["train_logloss"], abs=1e-5
    )
    np.testing.assert_allclose(sharded.predict(frame), single.predict(frame), atol=5e-4)
