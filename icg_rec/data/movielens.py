"""MovieLens loaders: ml-latest(-small) CSV, ml-1m `::` .dat and ml-100k, all into the same Dataset.

Implicit feedback: a rating >= 4 is a click (label 1.0), a lower rating is shown-but-not-clicked (0.0);
the rating itself is kept in the optional `rating` column. Posters `{posters_dir}/{movieId}.jpg` fill
items.image_path.
"""

import io
import logging
import os
from pathlib import Path

import polars as pl

from icg_rec.data.paths import movielens_dir
from icg_rec.data.schema import Dataset, validate_dataset
from icg_rec.errors import SchemaError

logger = logging.getLogger(__name__)

CLICK_RATING = 4.0  # ratings >= this are clicks
# The ratings each layout allows: half stars 0.5-5 in csv (ml-latest*) and dat (ml-10m writes half stars
# in ml-1m's layout, so ml-1m's whole stars are checked against that scale), whole stars 1-5 in ml-100k.
RATING_SCALES = {
    "csv": [x / 2 for x in range(1, 11)],
    "dat": [x / 2 for x in range(1, 11)],
    "100k": [1.0, 2.0, 3.0, 4.0, 5.0],
}
# The first MovieLens ratings date from January 1995 (ml-25m); an earlier timestamp (a truncated line
# whose last field lost digits reads as 1970) is refused unless `min_timestamp` says otherwise.
MOVIELENS_START = 788_918_400  # 1995-01-01T00:00:00Z
# ml-100k u.item: the 19 genre flag columns, in file order (as listed in u.genre).
ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
]  # fmt: skip
# The files that identify each layout, checked in this order.
LAYOUT_FILES = {
    "csv": ("ratings.csv", "movies.csv"),  # ml-latest-small, ml-latest, ml-25m, ...
    "dat": ("ratings.dat", "movies.dat"),  # ml-1m, ml-10m
    "100k": ("u.data", "u.item"),  # ml-100k
}
_RATINGS_DTYPES = {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64, "timestamp": pl.Int64}


def load_movielens(
    root: Path, posters_dir: Path | None = None, min_timestamp: int = MOVIELENS_START
) -> Dataset:
    """Loads one MovieLens layout folder into validated interactions, items and users.

    Args:
        root: a layout folder: ml-latest-small / ml-latest (ratings.csv, movies.csv), ml-1m
            (ratings.dat, movies.dat; `::`-separated, latin-1) or ml-100k (u.data, u.item).
        posters_dir: folder of `{movieId}.jpg` posters; items without one get a null image_path.
        min_timestamp: earliest rating time accepted, unix seconds (default: 1995-01-01, the first
            MovieLens ratings); lower it for a hand-made file in this layout.

    Returns:
        Dataset named `movielens/<folder name>`: interactions (user_id, item_id, label, timestamp,
        rating) in file order, every movie of the catalogue as an item (text = genres joined by "|"),
        and the users who rated something.

    Raises:
        SchemaError: the folder holds no known layout, a file does not parse, an id is below 1, a rating
            is off the layout's scale (RATING_SCALES), a timestamp is before `min_timestamp`, or the
            frames break the schema (e.g. a rating of an unknown movie).
    """
    root = Path(root)
    layout = detect_layout(root)
    ratings_file, movies_file = (root / name for name in LAYOUT_FILES[layout])
    if layout == "csv":
        ratings = _read_csv(
            ratings_file,
            {"userId": "user_id", "movieId": "item_id", "rating": "rating", "timestamp": "timestamp"},
        )
        movies = _read_csv(movies_file, {"movieId": "item_id", "title": "title", "genres": "text"})
    elif layout == "dat":
        ratings = _read_dat(ratings_file, ["user_id", "item_id", "rating", "timestamp"])
        movies = _read_dat(movies_file, ["item_id", "title", "text"])
    else:
        ratings = _read_csv(
            ratings_file, None, separator="\t", names=["user_id", "item_id", "rating", "timestamp"]
        )
        movies = _read_ml100k_items(movies_file)
    ratings = _check_ranges(
        ratings_file, _cast(ratings_file, ratings, _RATINGS_DTYPES), layout, min_timestamp
    )
    interactions = ratings.select(
        "user_id",
        "item_id",
        (pl.col("rating") >= CLICK_RATING).cast(pl.Float64).alias("label"),
        "timestamp",
        "rating",
    )
    movies = _check_ranges(
        movies_file, _cast(movies_file, movies, {"item_id": pl.Int64}), layout, min_timestamp
    )
    items = movies.select("item_id", "title", "text", pl.lit(None, pl.String).alias("image_path"))
    if posters_dir is not None:
        items = attach_posters(items, Path(posters_dir))
    users = interactions.select(pl.col("user_id").unique().sort())
    return validate_dataset(Dataset(f"movielens/{root.name}", interactions, items, users))


def load_movielens_with_posters(movielens_root: Path | None = None) -> Dataset:
    """ml-latest-small restricted to the rated movies that have a poster (2,943 movies, 58,498 ratings, 610 users).

    Args:
        movielens_root: folder holding ml-latest-small/ and posters/; default `paths.movielens_dir()`.

    Returns:
        Dataset named `movielens/ml-latest-small+posters`; the dropped movies and ratings are logged.
    """
    root = Path(movielens_root) if movielens_root is not None else movielens_dir()
    full = load_movielens(root / "ml-latest-small", root / "posters")
    with_poster = full.items.filter(pl.col("image_path").is_not_null())["item_id"].implode()
    interactions = full.interactions.filter(pl.col("item_id").is_in(with_poster))
    items = full.items.filter(pl.col("item_id").is_in(interactions["item_id"].implode()))
    users = interactions.select(pl.col("user_id").unique().sort())
    logger.info(
        "kept the %d of %d movies that have a poster and a rating: dropped %d of %d ratings and %d of %d users",
        items.height,
        full.items.height,
        full.interactions.height - interactions.height,
        full.interactions.height,
        full.users.height - users.height,
        full.users.height,
    )
    return Dataset(f"{full.name}+posters", interactions, items, users)


def detect_layout(root: Path) -> str:
    """Names the MovieLens layout of a folder: "csv", "dat" or "100k" (keys of LAYOUT_FILES).

    Raises:
        SchemaError: the folder does not exist or holds none of the layouts' file pairs.
    """
    for layout, names in LAYOUT_FILES.items():
        if all((root / name).is_file() for name in names):
            return layout
    raise SchemaError(
        f"{root} is not a MovieLens folder: expected one of the file pairs {list(LAYOUT_FILES.values())}"
        + ("" if root.is_dir() else " (the folder does not exist)")
    )


def attach_posters(items: pl.DataFrame, posters_dir: Path) -> pl.DataFrame:
    """Sets image_path to `{posters_dir}/{item_id}.jpg` where that file exists, else null.

    Args:
        items: items frame with an item_id column (an existing image_path column is replaced).
        posters_dir: the posters folder; file names other than `<digits>.jpg` are ignored.

    Returns:
        The items in the same order; items without a poster (null image_path) are counted in the log.

    Raises:
        SchemaError: posters_dir is not a folder.
    """
    if not posters_dir.is_dir():
        raise SchemaError(f"posters folder {posters_dir} does not exist (expected {{movieId}}.jpg files)")
    folder = posters_dir.resolve()
    poster_ids = sorted(
        int(name[:-4]) for name in os.listdir(folder) if name.endswith(".jpg") and name[:-4].isdigit()
    )
    posters = pl.DataFrame({"item_id": poster_ids}, schema={"item_id": pl.Int64}).with_columns(
        image_path=pl.format("{}/{}.jpg", pl.lit(str(folder)), pl.col("item_id"))
    )
    joined = items.drop("image_path", strict=False).join(
        posters, on="item_id", how="left", maintain_order="left"
    )
    n_missing = joined["image_path"].null_count()
    logger.info(
        "posters from %s: %d of %d items have none; %d posters match no item",
        folder,
        n_missing,
        items.height,
        len(poster_ids) - (items.height - n_missing),
    )
    return joined


def _read_csv(
    path: Path, rename: dict[str, str] | None, separator: str = ",", names: list[str] | None = None
) -> pl.DataFrame:
    """Reads a UTF-8 CSV as strings; `rename` maps required header names to ours, `names` means no header."""
    try:
        frame = pl.read_csv(
            path, separator=separator, has_header=names is None, new_columns=names, infer_schema=False
        )
    except pl.exceptions.PolarsError as error:
        raise SchemaError(f"cannot parse {path}: {error}") from error
    if rename is None:
        return _check_width(path, frame, names)
    if missing := [name for name in rename if name not in frame.columns]:
        raise SchemaError(
            f"{path} lacks column(s) {missing}; expected a header with {list(rename)}, got {frame.columns}"
        )
    return frame.select(pl.col(old).alias(new) for old, new in rename.items())


def _read_dat(path: Path, names: list[str]) -> pl.DataFrame:
    """Reads an ml-1m `::`-separated latin-1 file as strings, one column per name."""
    lines = pl.Series("line", path.read_bytes().decode("latin-1").splitlines())
    fields = lines.str.split("::")
    if (bad := (fields.list.len() != len(names)).arg_true()).len():
        raise SchemaError(
            f"{path}: expected {len(names)} '::'-separated fields {names} per line; {bad.len()} line(s) differ, "
            f"e.g. line {bad[0] + 1}: {lines[bad[0]]!r}"
        )
    return pl.DataFrame([fields.list.get(i).alias(name) for i, name in enumerate(names)])


def _read_ml100k_items(path: Path) -> pl.DataFrame:
    """Reads ml-100k u.item (pipe-separated, latin-1): id, title, dates, URL, then 19 genre flags."""
    names = ["item_id", "title", "release_date", "video_release_date", "url", *ML100K_GENRES]
    text = path.read_bytes().decode("latin-1").encode("utf-8")
    try:
        frame = pl.read_csv(
            io.BytesIO(text),
            separator="|",
            has_header=False,
            new_columns=names,
            infer_schema=False,
            quote_char=None,
        )
    except pl.exceptions.PolarsError as error:
        raise SchemaError(f"cannot parse {path}: {error}") from error
    _check_width(path, frame, names)
    flags = _cast(path, frame.select(ML100K_GENRES), dict.fromkeys(ML100K_GENRES, pl.Int64))
    genres = pl.concat_str(
        [pl.when(pl.col(g) == 1).then(pl.lit(g)) for g in ML100K_GENRES], separator="|", ignore_nulls=True
    )
    return pl.concat([frame.select("item_id", "title"), flags.select(genres.alias("text"))], how="horizontal")


def _check_width(path: Path, frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    if frame.width != len(names):
        raise SchemaError(f"{path}: expected {len(names)} fields {names} per line, got {frame.width}")
    return frame


def _cast(path: Path, frame: pl.DataFrame, dtypes: dict[str, pl.DataType]) -> pl.DataFrame:
    """Casts string columns to numbers; a value that does not parse raises SchemaError quoting its row."""
    for name, dtype in dtypes.items():
        parsed = frame[name].str.strip_chars().cast(dtype, strict=False)
        if (bad := (parsed.is_null() & frame[name].is_not_null()).arg_true()).len():
            raise SchemaError(
                f"{path}: column {name} expected {dtype}; {bad.len()} value(s) do not parse, "
                f"e.g. row {bad[0] + 1}: {frame.row(bad[0], named=True)}"
            )
        frame = frame.with_columns(parsed)
    return frame


def _check_ranges(path: Path, frame: pl.DataFrame, layout: str, min_timestamp: int) -> pl.DataFrame:
    """Refuses ids below 1, ratings off the layout's scale and timestamps before `min_timestamp`, quoting a row."""
    checks = {
        "user_id": (pl.col("user_id") < 1, "an id >= 1"),
        "item_id": (pl.col("item_id") < 1, "an id >= 1"),
        "rating": (
            ~pl.col("rating").is_in(RATING_SCALES[layout]),
            f"a rating on the scale {RATING_SCALES[layout]}",
        ),
        "timestamp": (
            pl.col("timestamp") < min_timestamp,
            f"unix seconds >= {min_timestamp} (MovieLens began in 1995; pass min_timestamp to allow earlier)",
        ),
    }
    for name, (bad, expected) in checks.items():
        if name not in frame.columns:
            continue
        rows = frame.with_row_index("row").filter(bad.fill_null(False))
        if rows.height:
            first = rows.row(0, named=True)
            raise SchemaError(
                f"{path}: column {name} expected {expected}; {rows.height} row(s) differ, "
                f"e.g. row {first.pop('row') + 1}: {first}"
            )
    return frame
