"""TorchRec batches streamed from parquet with bounded memory; under torchrun each process takes its slice.

The log is read `read_rows` rows at a time (file by file, synchronously, without pre-buffering), cut
into global batches of `batch_size` rows in file order, and each process encodes only its own rows of
each global batch: `torch.tensor_split(global rows, world)[rank]`, the split the in-memory
path uses. Every process therefore takes the same number of steps (DMP's collectives need that), and
2 processes see exactly the rows 1 process would. Memory grows with `read_rows`, `batch_size` and the
parquet row-group size (a scan decodes one row group at a time), never with the number of rows.

Rows come in file order: write the files shuffled (or in the order you want to train in).
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from icg_rec.doctor import missing_torchrec_message
from icg_rec.errors import SchemaError
from icg_rec.features.provider import EncodedFrame, FeatureProvider

try:
    from torchrec.datasets.utils import Batch
except (ImportError, OSError) as error:  # a missing or mixed FBGEMM build
    raise ImportError(missing_torchrec_message(error)) from error

Source = str | Path | Sequence[str | Path]  # a parquet file, a folder of them, or a list of files


def parquet_chunks(source: Source, columns: list[str], read_rows: int = 65_536) -> Iterator[pl.DataFrame]:
    """The columns of a parquet log, `read_rows` rows at a time (fewer at file and row-group ends).

    Files are read one after the other, synchronously and without pre-buffering: an asynchronous
    dataset scan reads ahead while the consumer trains, and its buffer grows with the log.

    Args:
        source: a parquet file, a folder of parquet files (read in name order), or a list of files.
        columns: the columns to read.
        read_rows: the most rows decoded at once.

    Returns:
        An iterator of frames.
    """
    if read_rows < 1:
        raise ValueError(f"read_rows must be >= 1, got {read_rows}")
    for path in _files(source):
        parquet = pq.ParquetFile(path, pre_buffer=False)
        if missing := [c for c in columns if c not in parquet.schema_arrow.names]:
            raise SchemaError(
                f"parquet file {path} is missing column(s) {missing}; it has {parquet.schema_arrow.names}"
            )
        for record_batch in parquet.iter_batches(batch_size=read_rows, columns=columns):
            if record_batch.num_rows:
                yield pl.from_arrow(record_batch)


def _files(source: Source) -> list[Path]:
    if isinstance(source, list | tuple):
        return [Path(p) for p in source]
    source = Path(source)
    if source.is_dir():
        if not (files := sorted(source.glob("*.parquet"))):
            raise SchemaError(f"folder {source} holds no *.parquet file")
        return files
    if not source.is_file():
        raise SchemaError(f"parquet log {source} does not exist")
    return [source]


class ParquetBatches:
    """Iterable of (this process's Batch, rows in the global batch) over a parquet log, in file order.

    Iterate once per epoch; each pass reads the files again. `counts()` tells what the encoding of
    this process's rows had to count during the last pass (unknown ids, cover fallbacks).

    Args:
        source: a parquet file, a folder of parquet files, or a list of files.
        provider: a fitted FeatureProvider (fit it with `fit_chunks(parquet_chunks(...))` for a big log).
        batch_size: global batch size; the last global batch may be smaller.
        read_rows: rows decoded from parquet at a time.
        rank: this process; default: the process group's rank (0 without one).
        world: processes; default: the process group's size (1 without one).
    """

    def __init__(
        self,
        source: Source,
        provider: FeatureProvider,
        batch_size: int,
        read_rows: int = 65_536,
        rank: int | None = None,
        world: int | None = None,
    ) -> None:
        self.source = source
        self.provider = provider
        self.batch_size = batch_size
        self.read_rows = read_rows
        self.rank = rank
        self.world = world

    def __iter__(self) -> Iterator[tuple[Batch, int]]:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        grouped = dist.is_available() and dist.is_initialized()
        rank = self.rank if self.rank is not None else (dist.get_rank() if grouped else 0)
        world = self.world if self.world is not None else (dist.get_world_size() if grouped else 1)
        self._counts: dict = {}
        pending = None  # rows read but not yet in a full global batch (< batch_size)
        for chunk in parquet_chunks(self.source, self.provider.columns(), self.read_rows):
            frame = chunk if pending is None else pl.concat([pending, chunk])
            full = frame.height // self.batch_size * self.batch_size
            yield from self._global_batches(frame[:full], rank, world)
            pending = frame[full:]
        if pending is not None and pending.height:
            yield from self._global_batches(pending, rank, world)

    def _global_batches(self, frame: pl.DataFrame, rank: int, world: int) -> Iterator[tuple[Batch, int]]:
        """This process's Batch of each global batch of `frame`, encoding only its own rows."""
        starts = range(0, frame.height, self.batch_size)
        own = [
            torch.tensor_split(torch.arange(s, min(s + self.batch_size, frame.height)), world)[rank]
            for s in starts
        ]
        if not own:
            return
        encoded = self.provider.encode(frame[torch.cat(own).numpy()])
        self._add_counts(encoded)
        offset = 0
        for rows, start in zip(own, starts, strict=True):
            yield (
                self.provider.batch(encoded, torch.arange(offset, offset + len(rows))),
                min(self.batch_size, frame.height - start),
            )
            offset += len(rows)

    def _add_counts(self, encoded: EncodedFrame) -> None:
        counts = {
            "rows": len(encoded),
            "cover_exact": encoded.n_cover_exact,
            "cover_fallback": encoded.n_cover_fallback,
            "cover_missing": encoded.n_cover_missing,
            "default_cohort": encoded.n_default_cohort,
        }
        for key, value in counts.items():
            self._counts[key] = self._counts.get(key, 0) + value
        unknown = self._counts.setdefault("unknown_ids", {})
        for column, value in encoded.n_unknown.items():
            unknown[column] = unknown.get(column, 0) + value

    def counts(self) -> dict:
        """Rows and what encoding counted on this process during the last complete or partial pass."""
        if not hasattr(self, "_counts"):
            raise ValueError("ParquetBatches has not been iterated yet")
        return self._counts
