import datetime as dt

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from PIL import Image

from icg_rec.data.contract import ColumnMapping, id_codes, read_interactions, read_items
from icg_rec.data.schema import validate_interactions
from icg_rec.errors import SchemaError


@pytest.fixture
def catalogue(tmp_path):
    """Two PNG covers under covers/ and an items table beside them with relative paths."""
    (tmp_path / "covers").mkdir()
    for name, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        Image.new("RGB", (8, 8), colour).save(tmp_path / "covers" / f"{name}.png")
    items = pl.DataFrame(
        {"item_id": [1, 2], "title": ["Red", "Blue"], "image_path": ["covers/a.png", "covers/b.png"]}
    )
    items.write_csv(tmp_path / "items.csv")
    return tmp_path


def _log(**columns) -> pl.DataFrame:
    base = {"user_id": [7, 7, 8], "item_id": [1, 2, 1], "label": [1, 0, 1], "timestamp": [100, 200, 300]}
    return pl.DataFrame({**base, **columns})


def test_items_from_csv_resolve_images_against_the_tables_folder(catalogue):
    items = read_items(catalogue / "items.csv")
    assert items.columns == ["item_id", "title", "text", "image_path"]
    assert items["image_path"].to_list() == [
        str(catalogue / "covers" / "a.png"),
        str(catalogue / "covers" / "b.png"),
    ]
    assert items["text"].to_list() == ["", ""]
    assert items.schema["item_id"] == pl.Int64


def test_items_from_parquet_pandas_and_pyarrow_are_the_same(catalogue, monkeypatch):
    expected = read_items(catalogue / "items.csv")
    pl.read_csv(catalogue / "items.csv").write_parquet(catalogue / "items.parquet")
    assert read_items(catalogue / "items.parquet").equals(expected)
    monkeypatch.chdir(catalogue)  # an in-memory table's relative paths start at the current folder
    frame = pl.read_csv("items.csv")
    pytest.importorskip("pandas")
    assert read_items(frame.to_pandas()).equals(expected)
    assert read_items(frame.to_arrow()).equals(expected)
    assert read_items(frame, image_root=catalogue).equals(expected)


def test_item_text_comes_from_text_else_genres(catalogue):
    base = pl.read_csv(catalogue / "items.csv")
    with_genres = base.with_columns(genres=pl.Series([["Drama", "War"], ["Comedy"]]))
    assert read_items(with_genres, image_root=catalogue)["text"].to_list() == ["Drama|War", "Comedy"]
    both = with_genres.with_columns(text=pl.Series(["t1", "t2"]))
    assert read_items(both, image_root=catalogue)["text"].to_list() == ["t1", "t2"]


def test_a_column_mapping_renames_from_toml(catalogue):
    (catalogue / "map.toml").write_text(
        '[items]\nitem_id = "sku"\ntitle = "name"\n[interactions]\nuser_id = "customer"\n'
    )
    mapping = ColumnMapping.from_toml(catalogue / "map.toml")
    assert mapping == ColumnMapping(
        items={"item_id": "sku", "title": "name"}, interactions={"user_id": "customer"}
    )
    frame = pl.read_csv(catalogue / "items.csv").rename({"item_id": "sku", "title": "name"})
    items = read_items(frame, mapping, image_root=catalogue)
    assert items["item_id"].to_list() == [1, 2] and items["title"].to_list() == ["Red", "Blue"]
    log = read_interactions(_log().rename({"user_id": "customer"}), mapping, items=items)
    assert log["user_id"].to_list() == [7, 7, 8]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[items]\nitem_ide = "sku"\n', r"\[items\] has unknown contract column\(s\) \['item_ide'\]"),
        ('[users]\nuser_id = "u"\n', r"unknown table\(s\) \['users'\]"),
        ("[items]\nitem_id = 3\n", r"needs column names as strings, got \{'item_id': 3\}"),
        ("[items\n", r"is not valid TOML"),
    ],
)
def test_a_bad_column_mapping_is_refused(tmp_path, text, message):
    (tmp_path / "map.toml").write_text(text)
    with pytest.raises(SchemaError, match=message):
        ColumnMapping.from_toml(tmp_path / "map.toml")


def test_a_missing_mapping_file_is_refused(tmp_path):
    with pytest.raises(SchemaError, match="no column mapping file at"):
        ColumnMapping.from_toml(tmp_path / "absent.toml")


def test_mapping_a_column_the_table_lacks_is_refused(catalogue):
    with pytest.raises(SchemaError, match=r"names column\(s\) \{'item_id': 'sku'\} that the table lacks"):
        read_items(catalogue / "items.csv", ColumnMapping(items={"item_id": "sku"}))


def test_labels_bool_int_and_float_become_float64(catalogue):
    items = read_items(catalogue / "items.csv")
    for label in ([True, False, True], [1, 0, 1], [1.0, 0.0, 1.0], np.array([1, 0, 1], dtype=np.uint8)):
        log = read_interactions(_log(label=pl.Series(label)), items=items)
        assert log.schema["label"] == pl.Float64 and log["label"].to_list() == [1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "dtype", [pl.Int8, pl.Int16, pl.Int32, pl.UInt16, pl.UInt32, pl.UInt64, pl.Float32, pl.Float64]
)
def test_integer_ids_of_any_width_and_integral_floats_become_int64(dtype):
    log = read_interactions(
        _log(user_id=pl.Series([7, 7, 8], dtype=dtype), item_id=pl.Series([1, 2, 1], dtype=dtype))
    )
    assert log.schema["user_id"] == pl.Int64 and log["user_id"].to_list() == [7, 7, 8]


def test_datetimes_and_dates_become_unix_seconds():
    stamps = [dt.datetime(2024, 1, 1, 0, 0, 1), dt.datetime(2024, 1, 1, 0, 0, 2), dt.datetime(2024, 1, 2)]
    log = read_interactions(_log(timestamp=stamps))
    assert log["timestamp"].to_list() == [1704067201, 1704067202, 1704153600]
    days = read_interactions(_log(timestamp=[dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)]))
    assert days["timestamp"].to_list() == [1704067200, 1704153600, 1704240000]


def test_csv_datetimes_are_parsed(tmp_path):
    _log(timestamp=["2024-01-01 00:00:01", "2024-01-01 00:00:02", "2024-01-02 00:00:00"]).write_csv(
        tmp_path / "log.csv"
    )
    assert read_interactions(tmp_path / "log.csv")["timestamp"].to_list() == [
        1704067201,
        1704067202,
        1704153600,
    ]


def test_string_ids_become_stable_codes_and_keep_the_original(catalogue):
    frame = pl.read_csv(catalogue / "items.csv").with_columns(item_id=pl.Series(["sku-a", "sku-b"]))
    items = read_items(frame, image_root=catalogue)
    assert items["item_id"].to_list() == id_codes(["sku-a", "sku-b"])
    assert items["item_key"].to_list() == ["sku-a", "sku-b"]
    assert all(0 <= code < 2**63 for code in items["item_id"])
    log = read_interactions(
        _log(user_id=["ann", "ann", "bob"], item_id=["sku-a", "sku-b", "sku-a"]), items=items
    )
    assert log["item_id"].to_list() == id_codes(["sku-a", "sku-b", "sku-a"])
    assert log["user_key"].to_list() == ["ann", "ann", "bob"]
    assert log["user_id"].to_list() == id_codes(["ann", "ann", "bob"])
    assert id_codes(["sku-a"]) == [id_codes(["sku-a", "x"])[0]]  # a code depends on its string only


def test_integer_log_ids_are_coded_like_string_item_ids(catalogue):
    frame = pl.read_csv(catalogue / "items.csv").with_columns(item_id=pl.Series(["1", "b2"]))
    items = read_items(frame, image_root=catalogue)
    log = read_interactions(_log(item_id=[1, 1, 1]), items=items)
    assert log["item_id"].to_list() == id_codes(["1", "1", "1"])


def test_cover_id_and_propensity_are_read():
    log = read_interactions(_log(cover_id=pl.Series([0, 1, 2], dtype=pl.Int16), propensity=[0.5, 0.25, 1]))
    assert log.schema["cover_id"] == pl.Int64 and log.schema["propensity"] == pl.Float64
    assert log["propensity"].to_list() == [0.5, 0.25, 1.0]
    assert (
        "propensity" not in read_interactions(_log(cover_id=[0, 1, 2])).columns
    )  # shown covers, no propensity


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            {"label": [1, 2, 0]},
            r"interactions.label \(Int64\): expected 1 \(click\) or 0.*1 of 3 value\(s\) offend, e.g. \[2\]",
        ),
        (
            {"label": [0.5, 1.0, 0.0]},
            r"interactions.label \(Float64\): expected 1 \(click\) or 0.*e.g. \[0.5\]",
        ),
        ({"label": ["yes", "no", "yes"]}, r"interactions.label \(String\): expected 0/1 clicks"),
        ({"label": [1, None, 0]}, r"interactions.label \(Int64\): expected no nulls"),
        (
            {"user_id": [7.0, 7.5, 8.0]},
            r"interactions.user_id \(Float64\): expected integral numbers.*e.g. \[7.5\]",
        ),
        (
            {"user_id": [7.0, float("nan"), 8.0]},
            r"interactions.user_id \(Float64\): expected integral numbers",
        ),
        (
            {"user_id": pl.Series([7, 2**63, 8], dtype=pl.UInt64)},
            r"interactions.user_id \(UInt64\): expected integers <= ",
        ),
        ({"user_id": [True, False, True]}, r"interactions.user_id \(Boolean\): expected integers"),
        (
            {"timestamp": ["monday", "tuesday", "x"]},
            r"interactions.timestamp \(String\): expected unix seconds",
        ),
        (
            {
                "timestamp": [
                    dt.datetime(2024, 1, 1, 0, 0, 0, 500),
                    dt.datetime(2024, 1, 2),
                    dt.datetime(2024, 1, 3),
                ]
            },
            r"interactions.timestamp \(Datetime.*expected whole seconds",
        ),
        (
            {"timestamp": [100.5, 200.0, 300.0]},
            r"interactions.timestamp \(Float64\): expected integral numbers",
        ),
        ({"weight": ["a", "b", "c"]}, r"interactions.weight \(String\): expected numbers"),
        ({"cover_id": [0.5, 1.0, 2.0]}, r"interactions.cover_id \(Float64\): expected integral numbers"),
        ({"cover_id": ["a", "b", "c"]}, r"interactions.cover_id \(String\): expected integers"),
        (
            {"cover_id": [0, 1, 2], "propensity": [0.5, 0.0, 1.0]},
            r"interactions.propensity \(Float64\): expected in \(0, 1\]",
        ),
        (
            {"cover_id": [0, 1, 2], "propensity": [0.5, 1.5, 1.0]},
            r"interactions.propensity \(Float64\): expected in \(0, 1\]",
        ),
        ({"propensity": [0.5, 0.5, 1.0]}, r"a propensity column but no cover_id"),
        ({"item_id": [1, 2, 3]}, r"interactions.item_id \(Int64\): expected ids present in items.item_id"),
    ],
)
def test_what_cannot_be_coerced_losslessly_is_refused(catalogue, columns, message):
    with pytest.raises(SchemaError, match=message):
        read_interactions(_log(**columns), items=read_items(catalogue / "items.csv"))


def test_missing_log_columns_are_named():
    with pytest.raises(SchemaError, match=r"interactions are missing column\(s\) \['label'\].*ColumnMapping"):
        read_interactions(_log().drop("label"))


def test_string_log_item_ids_against_integer_items_are_unknown(catalogue):
    with pytest.raises(SchemaError, match="expected ids present in items.item_id"):
        read_interactions(_log(item_id=["x", "y", "x"]), items=read_items(catalogue / "items.csv"))


def test_integer_log_ids_against_string_items_must_be_ids_of_them(catalogue):
    frame = pl.read_csv(catalogue / "items.csv").with_columns(item_id=pl.Series(["a", "b"]))
    items = read_items(frame, image_root=catalogue)
    with pytest.raises(SchemaError, match="expected ids present in items.item_id"):
        read_interactions(_log(), items=items)


def test_duplicate_rows_are_refused_not_dropped():
    with pytest.raises(SchemaError, match="found duplicates"):
        read_interactions(_log(user_id=[7, 7, 7], item_id=[1, 1, 1], timestamp=[5, 5, 6]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.with_columns(image_path=pl.Series(["covers/a.png", "covers/none.png"])),
            r"1 of 2 image file\(s\) do not exist.*none.png",
        ),
        (
            lambda f: f.with_columns(image_path=pl.Series(["covers/a.png", None])),
            r"items.image_path \(String\): expected no nulls",
        ),
        (lambda f: f.with_columns(title=pl.Series([1, 2])), r"items.title \(Int64\): expected text"),
        (
            lambda f: f.with_columns(title=pl.Series(["x", None])),
            r"items.title \(String\): expected no nulls",
        ),
        (
            lambda f: f.with_columns(item_id=pl.Series([1, 1])),
            r"items.item_id \(Int64\): expected unique ids",
        ),
        (
            lambda f: f.with_columns(item_id=pl.Series([1.5, 2.0])),
            r"items.item_id \(Float64\): expected integral",
        ),
        (lambda f: f.drop("image_path"), r"items are missing column\(s\) \['image_path'\]"),
        (lambda f: f.with_columns(genres=pl.Series([1, 2])), r"items.genres \(Int64\): expected text"),
        (
            lambda f: f.with_columns(sku=pl.Series([3, 4])),
            r"column\(s\) \['item_id'\] exist and are also mapped",
        ),
    ],
)
def test_bad_items_are_refused(catalogue, change, message):
    frame = change(pl.read_csv(catalogue / "items.csv"))
    mapping = ColumnMapping(items={"item_id": "sku"}) if "sku" in frame.columns else None
    with pytest.raises(SchemaError, match=message):
        read_items(frame, mapping, image_root=catalogue)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("absent.csv", "items table absent.csv does not exist"),
        ("items.json", r"expected a .csv, .tsv or .parquet file, got '.json'"),
        ([1, 2], "expected a CSV/parquet path or a polars, pandas or pyarrow table, got list"),
    ],
)
def test_bad_sources_are_refused(catalogue, monkeypatch, source, message):
    monkeypatch.chdir(catalogue)
    (catalogue / "items.json").write_text("{}")
    with pytest.raises(SchemaError, match=message):
        read_items(source)


def test_read_frames_pass_the_schema_validators(catalogue):
    items = read_items(catalogue / "items.csv")
    log = read_interactions(pa.table(_log().to_dict(as_series=False)), items=items)
    assert validate_interactions(log, items=items) is log
    pd = pytest.importorskip("pandas")
    assert read_interactions(pd.DataFrame(_log().to_dict(as_series=False))).equals(log)
