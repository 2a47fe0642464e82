import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from icg_rec.errors import SchemaError
from icg_rec.features.provider import FeatureProvider
from icg_rec.features.store import DEFAULT_COHORT, CoverEmbeddingStore
from icg_rec.features.stream import ParquetBatches, parquet_chunks


def _log(n: int, seed: int = 0, width: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    history = [rng.integers(0, 40, rng.integers(0, 4)).tolist() for _ in range(n)]
    return pl.DataFrame(
        {
            "user_id": rng.integers(0, 30, n),
            "item_id": rng.integers(0, 50, n),
            "history": pl.Series(history, dtype=pl.List(pl.Int64)),
            "x": rng.normal(size=n),
            "label": rng.integers(0, 2, n).astype(float),
        }
    ).with_columns(
        pl.Series("text", rng.normal(size=(n, width)).astype(np.float32), dtype=pl.Array(pl.Float32, width))
    )


@pytest.fixture
def log_files(tmp_path) -> tuple[pl.DataFrame, list[Path]]:
    """A 230-row log in two parquet files (row groups of 40 rows)."""
    frame = _log(230)
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    frame[:130].write_parquet(paths[0], row_group_size=40)
    frame[130:].write_parquet(paths[1], row_group_size=40)
    return frame, paths


def _provider(frame: pl.DataFrame) -> FeatureProvider:
    store = CoverEmbeddingStore().build(np.arange(45), np.full(45, DEFAULT_COHORT), np.eye(45, 4))
    return FeatureProvider(["user_id", "item_id", "history"], ["x"], ["text"], cover_store=store).fit(frame)


def test_chunks_are_bounded_and_in_file_order(log_files):
    frame, paths = log_files
    chunks = list(parquet_chunks(paths, ["user_id", "label"], read_rows=32))
    assert max(c.height for c in chunks) <= 32
    assert pl.concat(chunks).equals(frame.select("user_id", "label"))
    assert pl.concat(parquet_chunks(paths[0].parent, ["user_id"], 50)).height == 230  # a folder of files
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['cohort'\]"):
        next(parquet_chunks(paths, ["user_id", "cohort"]))
    with pytest.raises(SchemaError, match="does not exist"):
        next(parquet_chunks(paths[0].parent / "nope.parquet", ["user_id"]))
    (paths[0].parent / "empty").mkdir()
    with pytest.raises(SchemaError, match=r"holds no \*.parquet file"):
        next(parquet_chunks(paths[0].parent / "empty", ["user_id"]))


def test_one_process_streams_the_in_memory_batches(log_files):
    frame, paths = log_files
    provider = _provider(frame)
    stream = ParquetBatches(paths, provider, batch_size=64, read_rows=48)
    streamed = list(stream)
    assert [rows for _, rows in streamed] == [64, 64, 64, 38]
    encoded = provider.encode(frame)
    for (batch, _), rows in zip(streamed, torch.split(torch.arange(230), 64), strict=True):
        expected = provider.batch(encoded, rows)
        torch.testing.assert_close(batch.dense_features, expected.dense_features)
        torch.testing.assert_close(batch.labels, expected.labels)
        assert batch.sparse_features.keys() == expected.sparse_features.keys()
        torch.testing.assert_close(batch.sparse_features.values(), expected.sparse_features.values())
        torch.testing.assert_close(batch.sparse_features.lengths(), expected.sparse_features.lengths())
    counts = stream.counts()
    assert counts["rows"] == 230
    assert counts["cover_missing"] == encoded.n_cover_missing  # items 45..49 have no cover
    assert counts["unknown_ids"] == encoded.n_unknown


def test_two_processes_split_every_global_batch_as_the_in_memory_path(log_files):
    frame, paths = log_files
    provider = _provider(frame)
    ranks = [list(ParquetBatches(paths, provider, 64, read_rows=48, rank=r, world=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 4  # the same number of steps on every process
    encoded = provider.encode(frame)
    for step, rows in enumerate(torch.split(torch.arange(230), 64)):
        for rank in (0, 1):
            batch, global_rows = ranks[rank][step]
            assert global_rows == len(rows)
            expected = provider.batch(encoded, torch.tensor_split(rows, 2)[rank])
            torch.testing.assert_close(batch.labels, expected.labels)
            torch.testing.assert_close(batch.sparse_features.values(), expected.sparse_features.values())


def test_fit_chunks_equals_fit(log_files):
    frame, paths = log_files
    whole = _provider(frame)
    chunked = FeatureProvider(
        ["user_id", "item_id", "history"], ["x"], ["text"], cover_store=whole.cover_store
    )
    chunked.fit_chunks(parquet_chunks(paths, chunked.columns(), read_rows=32))
    for c in whole.sparse:
        np.testing.assert_array_equal(chunked.vocab_[c], whole.vocab_[c])
    np.testing.assert_allclose(chunked.dense_mean_, whole.dense_mean_, rtol=1e-12)
    np.testing.assert_allclose(chunked.dense_std_, whole.dense_std_, rtol=1e-12)
    assert (chunked.lists_, chunked.dense_keys_) == (whole.lists_, whole.dense_keys_)
    with pytest.raises(SchemaError, match="the training frame is empty"):
        FeatureProvider(["user_id"]).fit_chunks([frame[:0]])
    with pytest.raises(SchemaError, match="a chunk of the training log has schema"):
        FeatureProvider(["user_id"]).fit_chunks(
            [frame[:5], frame[5:9].with_columns(pl.col("x").cast(pl.Float32))]
        )


PEAK_SCRIPT = textwrap.dedent(
    """
    import sys
    from icg_rec.features.provider import FeatureProvider
    from icg_rec.features.stream import ParquetBatches, parquet_chunks
    provider = FeatureProvider(["user_id", "item_id", "history"], ["x"], ["text"])
    provider.fit_chunks(parquet_chunks(sys.argv[1], provider.columns(), read_rows=4096))
    rows = sum(len(batch.labels) for batch, _ in ParquetBatches(sys.argv[1], provider, 512, read_rows=4096))
    # VmHWM: peak resident memory of this process image (ru_maxrss would include the parent's, kept across exec)
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(rows, peak_kb // 1024)
    """
)


@pytest.mark.skipif(
    not Path("/proc/self/status").is_file(), reason="reads the peak memory from /proc (Linux)"
)
def test_peak_memory_does_not_grow_with_the_log(tmp_path):
    peaks = {}
    for times in (1, 5):
        path = tmp_path / f"log{times}.parquet"
        _log(40_000 * times, width=128).write_parquet(path, row_group_size=8192)
        done = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        rows, peaks[times] = map(int, done.stdout.split())
        assert rows == 40_000 * times
    # the 5x log holds 160,000 more rows x 128 float32 = 82 MB decoded; streaming keeps the peak flat
    assert peaks[5] - peaks[1] < 20, peaks
