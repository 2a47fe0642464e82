"""The dataset contract: your own items table and click log, read into icg_rec's validated frames.

Items: `item_id`, `title`, `image_path` (relative to the table file's folder, or absolute), optional
`text` and `genres`. Interactions: `user_id`, `item_id`, `label`, `timestamp`, optional `weight`,
`rating`, `cover_id`, `propensity`. Sources: a CSV or parquet path, or a polars / pandas / pyarrow table.
Other column names map onto the contract through a `ColumnMapping` (TOML):

    [items]
    item_id = "sku"
    [interactions]
    user_id = "customer"

Coercion is lossless or refused: integer ids of any width become Int64, labels bool / int / float in
{0, 1} become Float64, integral floats become Int64 only when every value is integral, datetimes become
unix seconds when they hold whole seconds, and string ids become stable 63-bit codes (blake2b) whose
original strings stay in an `item_key` / `user_key` column. Anything else raises `SchemaError` naming
the column, the expected type and example values; no row is ever dropped or changed in silence.
"""

import hashlib
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from icg_rec.data.schema import (
    INTERACTIONS_OPTIONAL,
    INTERACTIONS_SCHEMA,
    validate_interactions,
    validate_items,
)
from icg_rec.errors import SchemaError

logger = logging.getLogger(__name__)

ITEM_COLUMNS = ("item_id", "title", "image_path")  # required item columns of the contract
ITEM_OPTIONAL = ("text", "genres")  # optional item columns: text, else genres, else ""
INTERACTION_COLUMNS = tuple(INTERACTIONS_SCHEMA)  # user_id, item_id, label, timestamp
INTERACTION_OPTIONAL = tuple(INTERACTIONS_OPTIONAL)  # weight, rating, cover_id, propensity
KEY_COLUMN = {"item_id": "item_key", "user_id": "user_key"}  # original string ids of hashed id columns
_SAMPLE = 5  # example values quoted in an error
_INT64_MAX = 2**63 - 1


@dataclass
class ColumnMapping:
    """Contract column name -> the name of that column in your tables, per table."""

    items: dict[str, str] = field(default_factory=dict)  # e.g. {"item_id": "sku", "title": "name"}
    interactions: dict[str, str] = field(default_factory=dict)  # e.g. {"user_id": "customer"}

    def __post_init__(self) -> None:
        for table, names, known in (
            ("items", self.items, ITEM_COLUMNS + ITEM_OPTIONAL),
            ("interactions", self.interactions, INTERACTION_COLUMNS + INTERACTION_OPTIONAL),
        ):
            if unknown := sorted(set(names) - set(known)):
                raise SchemaError(
                    f"column mapping [{table}] has unknown contract column(s) {unknown}; known: {list(known)}"
                )
            if bad := {k: v for k, v in names.items() if not isinstance(v, str) or not v}:
                raise SchemaError(f"column mapping [{table}] needs column names as strings, got {bad}")

    @classmethod
    def from_toml(cls, path: str | Path) -> "ColumnMapping":
        """Reads `[items]` and `[interactions]` tables of contract name = your column name.

        Args:
            path: a TOML file; either table may be absent.

        Returns:
            The mapping.

        Raises:
            SchemaError: the file is missing or not TOML, has another table, or maps an unknown column.
        """
        path = Path(path)
        if not path.is_file():
            raise SchemaError(f"no column mapping file at {path}")
        try:
            with path.open("rb") as fh:
                values = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise SchemaError(f"column mapping {path} is not valid TOML: {err}") from err
        if unknown := sorted(set(values) - {"items", "interactions"}):
            raise SchemaError(
                f"column mapping {path} has unknown table(s) {unknown}; expected [items], [interactions]"
            )
        return cls(items=values.get("items", {}), interactions=values.get("interactions", {}))


def read_items(
    source: Any, mapping: ColumnMapping | None = None, image_root: str | Path | None = None
) -> pl.DataFrame:
    """Reads an items table onto ITEMS_SCHEMA, with image paths resolved and checked.

    Args:
        source: a CSV or parquet path, or a polars / pandas / pyarrow table.
        mapping: contract name -> your column name; None when the columns already have contract names.
        image_root: folder that relative image paths start from; default the table file's folder (a
            path source) or the current folder (an in-memory table).

    Returns:
        item_id (Int64), title, text, image_path (absolute), plus `item_key` (the original string ids)
        when the ids were strings; validated by `validate_items`.

    Raises:
        SchemaError: a missing column, a type that cannot be coerced losslessly, a null title or image
            path, an image file that does not exist, or a repeated item_id.
    """
    frame, folder = _load(source, "items")
    frame = _rename(frame, mapping.items if mapping else {}, "items", ITEM_COLUMNS, ITEM_OPTIONAL)
    root = Path(image_root) if image_root is not None else folder
    frame, key = _coerce_id(frame, "item_id", "items")
    title = _string(frame, "title", "items")
    text = _item_text(frame)
    paths = _image_paths(frame, root)
    columns = [frame["item_id"], title, text, paths]
    if key is not None:
        columns.append(key)
    return validate_items(pl.DataFrame(columns))


def read_interactions(
    source: Any, mapping: ColumnMapping | None = None, items: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Reads a click log onto INTERACTIONS_SCHEMA (+ the optional columns it has).

    Args:
        source: a CSV or parquet path, or a polars / pandas / pyarrow table.
        mapping: contract name -> your column name; None when the columns already have contract names.
        items: the frame `read_items` returned; every item_id must be in it, and when its ids were
            strings (an `item_key` column) the log's item ids are coded the same way.

    Returns:
        user_id, item_id, timestamp (Int64), label (Float64), the optional weight / rating / propensity
        (Float64) and cover_id (Int64) it has, plus `user_key` / `item_key` when ids were strings;
        validated by `validate_interactions`.

    Raises:
        SchemaError: a missing column, a type that cannot be coerced losslessly, a label outside {0, 1},
            a bad timestamp, weight or propensity, duplicate rows, or an item unknown to `items`.
    """
    frame, _ = _load(source, "interactions")
    frame = _rename(
        frame,
        mapping.interactions if mapping else {},
        "interactions",
        INTERACTION_COLUMNS,
        INTERACTION_OPTIONAL,
    )
    hashed_items = items is not None and "item_key" in items.columns
    if hashed_items and frame.schema["item_id"] != pl.String:
        frame = frame.with_columns(pl.col("item_id").cast(pl.String))  # integer ids as their text
    frame, user_key = _coerce_id(frame, "user_id", "interactions")
    frame, item_key = _coerce_id(frame, "item_id", "interactions", force_codes=hashed_items)
    columns = [
        frame["user_id"],
        frame["item_id"],
        _label(frame),
        _timestamp(frame),
    ]
    for name in INTERACTION_OPTIONAL:
        if name in frame.columns:
            columns.append(
                _float(frame, name)
                if INTERACTIONS_OPTIONAL[name] == pl.Float64
                else _integer(frame, name, "interactions")
            )
    columns += [key for key in (user_key, item_key) if key is not None]
    return validate_interactions(pl.DataFrame(columns), items=items)


def id_codes(values: list[str]) -> list[int]:
    """Stable 63-bit codes of string ids: blake2b of the UTF-8 text, top bit cleared.

    Args:
        values: string ids.

    Returns:
        One non-negative Int64 code per value; the same string always gets the same code.
    """
    return [int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "big") >> 1 for v in values]


def _load(source: Any, what: str) -> tuple[pl.DataFrame, Path]:
    """The source as a polars frame, and the folder relative paths start from."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise SchemaError(f"{what} table {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return pl.read_parquet(path), path.parent.resolve()
        if suffix in (".csv", ".tsv"):
            separator = "\t" if suffix == ".tsv" else ","
            return pl.read_csv(path, separator=separator, try_parse_dates=True), path.parent.resolve()
        raise SchemaError(f"{what} table {path}: expected a .csv, .tsv or .parquet file, got {suffix!r}")
    if isinstance(source, pl.DataFrame):
        return source, Path.cwd()
    module = type(source).__module__.split(".")[0]
    if module == "pandas":
        return pl.from_pandas(source), Path.cwd()
    if module == "pyarrow":
        return pl.DataFrame(pl.from_arrow(source)), Path.cwd()
    raise SchemaError(
        f"{what}: expected a CSV/parquet path or a polars, pandas or pyarrow table, got {type(source).__name__}"
    )


def _rename(
    frame: pl.DataFrame, mapping: Mapping[str, str], what: str, required: tuple, optional: tuple
) -> pl.DataFrame:
    """Contract names for the mapped columns; the contract's columns must then be present."""
    if missing := {k: v for k, v in mapping.items() if v not in frame.columns}:
        raise SchemaError(
            f"{what}: the column mapping names column(s) {missing} that the table lacks; got {frame.columns}"
        )
    clashes = [k for k, v in mapping.items() if k in frame.columns and k != v and k not in mapping.values()]
    if clashes:
        raise SchemaError(
            f"{what}: column(s) {clashes} exist and are also mapped from other columns {[mapping[c] for c in clashes]}; "
            "rename one of them"
        )
    frame = frame.rename({v: k for k, v in mapping.items()})
    if missing := [name for name in required if name not in frame.columns]:
        raise SchemaError(
            f"{what} are missing column(s) {missing}; expected {list(required)} (optional {list(optional)}), "
            f"got {frame.columns}; map other names with a ColumnMapping"
        )
    return frame


def _examples(series: pl.Series) -> list:
    return series.head(_SAMPLE).to_list()


def _refuse(
    what: str, name: str, series: pl.Series, expected: str, bad: pl.Series | None = None
) -> SchemaError:
    shown = series if bad is None else series.filter(bad)
    count = "" if bad is None else f"; {int(bad.sum())} of {series.len()} value(s) offend"
    return SchemaError(f"{what}.{name} ({series.dtype}): expected {expected}{count}, e.g. {_examples(shown)}")


def _no_nulls(series: pl.Series, what: str) -> None:
    if series.null_count():
        raise _refuse(what, series.name, series, "no nulls", series.is_null())


def _integer(frame: pl.DataFrame, name: str, what: str) -> pl.Series:
    """An integer column as Int64: any integer width, or floats that are all integral."""
    series = frame[name]
    _no_nulls(series, what)
    dtype = series.dtype
    if dtype.is_integer():
        if dtype == pl.UInt64 and series.len() and series.max() > _INT64_MAX:
            raise _refuse(what, name, series, f"integers <= {_INT64_MAX}", series > _INT64_MAX)
        return series.cast(pl.Int64)
    if dtype.is_float():
        whole = series.is_finite() & (series == series.floor()) & (series.abs() <= 2**53)
        if not whole.all():
            raise _refuse(
                what,
                name,
                series,
                "integral numbers (a float column converts only when every value is)",
                ~whole,
            )
        return series.cast(pl.Int64)
    raise _refuse(what, name, series, "integers")


def _coerce_id(
    frame: pl.DataFrame, name: str, what: str, force_codes: bool = False
) -> tuple[pl.DataFrame, pl.Series | None]:
    """Int64 ids; string ids become 63-bit codes, returned with the original strings as a key column."""
    series = frame[name]
    if series.dtype in (pl.Categorical, pl.Enum):
        series = series.cast(pl.String)
    if series.dtype != pl.String:
        if force_codes:
            raise _refuse(what, name, series, "string ids like the items table's")
        return frame.with_columns(_integer(frame, name, what)), None
    _no_nulls(series, what)
    originals = series.unique().to_list()
    codes = dict(zip(originals, id_codes(originals), strict=True))
    if len(set(codes.values())) < len(codes):
        seen: dict[int, str] = {}
        for text, code in codes.items():
            if code in seen:
                raise SchemaError(
                    f"{what}.{name}: string ids {seen[code]!r} and {text!r} have the same 63-bit code"
                )
            seen[code] = text
    coded = series.replace_strict(codes, return_dtype=pl.Int64).alias(name)
    return frame.with_columns(coded), series.alias(KEY_COLUMN[name])


def _string(frame: pl.DataFrame, name: str, what: str) -> pl.Series:
    series = frame[name]
    if series.dtype in (pl.Categorical, pl.Enum):
        series = series.cast(pl.String)
    if series.dtype != pl.String:
        raise _refuse(what, name, series, "text (String)")
    _no_nulls(series, what)
    return series


def _item_text(frame: pl.DataFrame) -> pl.Series:
    """`text` if present, else `genres` (a list joins with "|"), else "" for every item."""
    if "text" in frame.columns:
        logger.info("items.text: from column 'text'")
        return _string(frame, "text", "items")
    if "genres" in frame.columns:
        logger.info("items.text: from column 'genres'")
        genres = frame["genres"]
        if isinstance(genres.dtype, pl.List):
            genres = genres.list.join("|")
        return _string(frame.with_columns(genres.alias("genres")), "genres", "items").alias("text")
    logger.info("items.text: no text or genres column; every item's text is ''")
    return pl.Series("text", [""] * frame.height, dtype=pl.String)


def _image_paths(frame: pl.DataFrame, root: Path) -> pl.Series:
    """Absolute image paths; every file must exist."""
    series = _string(frame, "image_path", "items")
    resolved = [str(p if p.is_absolute() else (root / p).resolve()) for p in map(Path, series.to_list())]
    absent = [p for p in resolved if not Path(p).is_file()]
    if absent:
        raise SchemaError(
            f"items.image_path: {len(absent)} of {len(resolved)} image file(s) do not exist "
            f"(relative paths start at {root}), e.g. {absent[:_SAMPLE]}"
        )
    return pl.Series("image_path", resolved, dtype=pl.String)


def _label(frame: pl.DataFrame) -> pl.Series:
    """Float64 labels in {0, 1} from bool, integer or float columns."""
    series = frame["label"]
    _no_nulls(series, "interactions")
    if not (series.dtype == pl.Boolean or series.dtype.is_numeric()):
        raise _refuse("interactions", "label", series, "0/1 clicks as bool, integer or float")
    values = series.cast(pl.Float64)
    bad = ~values.is_in([0.0, 1.0]) | values.is_nan()
    if bad.any():
        raise _refuse("interactions", "label", series, "1 (click) or 0 (shown, not clicked)", bad)
    return values


def _timestamp(frame: pl.DataFrame) -> pl.Series:
    """Unix seconds (Int64) from integers, integral floats, dates or whole-second datetimes."""
    series = frame["timestamp"]
    _no_nulls(series, "interactions")
    if series.dtype == pl.Date:
        return series.cast(pl.Datetime("ms")).dt.epoch("s").alias("timestamp")
    if isinstance(series.dtype, pl.Datetime):
        micros = series.dt.epoch("us")
        fractional = micros % 1_000_000 != 0
        if fractional.any():
            raise _refuse("interactions", "timestamp", series, "whole seconds", fractional)
        return (micros // 1_000_000).alias("timestamp")
    if series.dtype.is_numeric():
        return _integer(frame, "timestamp", "interactions")
    raise _refuse("interactions", "timestamp", series, "unix seconds (integers) or datetimes")


def _float(frame: pl.DataFrame, name: str) -> pl.Series:
    series = frame[name]
    if not series.dtype.is_numeric():
        raise _refuse("interactions", name, series, "numbers")
    if series.dtype.is_integer() and series.len() and series.abs().max() > 2**53:
        raise _refuse("interactions", name, series, "integers a Float64 holds exactly", series.abs() > 2**53)
    return series.cast(pl.Float64)
