import logging
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from icg_rec.data.movielens import detect_layout, load_movielens, load_movielens_with_posters
from icg_rec.data.schema import validate_dataset
from icg_rec.errors import SchemaError

EXPECTED_INTERACTIONS = pl.DataFrame(
    {
        "user_id": [1, 1, 1, 2, 2, 3],
        "item_id": [1, 2, 3, 1, 4, 3],
        "label": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        "timestamp": [900_000_100, 900_000_200, 900_000_300, 900_000_150, 900_000_250, 900_000_050],
        "rating": [4.0, 3.0, 5.0, 2.0, 4.0, 1.0],
    }
)
EXPECTED_ITEMS = pl.DataFrame(
    {
        "item_id": [1, 2, 3, 4],
        "title": [
            "Toy Story (1995)",
            "Amélie (2001)",
            "Big, Bad Movie (1999)",
            "Star Wars: Episode IV (1977)",
        ],
        "text": [
            "Animation|Children's|Comedy",
            "Comedy|Romance",
            "Action|Thriller",
            "Action|Adventure|Sci-Fi",
        ],
        "image_path": pl.Series([None] * 4, dtype=pl.String),
    }
)


@pytest.mark.parametrize("layout", ["csv", "dat", "100k"])
def test_every_layout_loads_into_the_same_frames(tiny_layouts, layout):
    root = tiny_layouts[layout]
    assert detect_layout(root) == layout
    dataset = load_movielens(root)
    assert dataset.name == f"movielens/{root.name}"
    assert_frame_equal(dataset.interactions, EXPECTED_INTERACTIONS)
    assert_frame_equal(dataset.items, EXPECTED_ITEMS)
    assert dataset.users["user_id"].to_list() == [1, 2, 3]
    validate_dataset(dataset)


def test_posters_are_joined_by_movie_id_and_missing_ones_counted(tiny_movielens, caplog):
    posters = tiny_movielens / "posters"
    with caplog.at_level(logging.INFO, logger="icg_rec.data.movielens"):
        items = load_movielens(tiny_movielens / "ml-latest-small", posters).items
    expected = [str(posters.resolve() / "1.jpg"), None, str(posters.resolve() / "3.jpg"), None]
    assert items["image_path"].to_list() == expected
    assert "2 of 4 items have none; 1 posters match no item" in caplog.text


def test_with_posters_keeps_rated_movies_that_have_one(tiny_movielens):
    dataset = load_movielens_with_posters(tiny_movielens)
    assert dataset.name == "movielens/ml-latest-small+posters"
    assert dataset.items["item_id"].to_list() == [1, 3]
    assert dataset.interactions.select("user_id", "item_id").rows() == [(1, 1), (1, 3), (2, 1), (3, 3)]
    assert dataset.users["user_id"].to_list() == [1, 2, 3]


def test_a_folder_without_a_layout_is_refused(tmp_path):
    with pytest.raises(SchemaError, match="is not a MovieLens folder.*does not exist"):
        load_movielens(tmp_path / "nowhere")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(SchemaError, match="is not a MovieLens folder"):
        load_movielens(tmp_path)


def test_a_missing_posters_folder_is_refused(tiny_layouts, tmp_path):
    with pytest.raises(SchemaError, match="posters folder .*absent does not exist"):
        load_movielens(tiny_layouts["csv"], tmp_path / "absent")


def test_a_dat_line_with_the_wrong_field_count_names_the_line(tiny_layouts):
    ratings = tiny_layouts["dat"] / "ratings.dat"
    ratings.write_text(ratings.read_text() + "4::1::5\n")
    with pytest.raises(
        SchemaError, match=r"ratings.dat: expected 4 '::'-separated fields.*line 7: '4::1::5'"
    ):
        load_movielens(tiny_layouts["dat"])


def test_a_value_that_does_not_parse_names_file_column_and_row(tiny_layouts):
    ratings = tiny_layouts["csv"] / "ratings.csv"
    ratings.write_text(ratings.read_text() + "4,1,four,900000100\n")
    with pytest.raises(SchemaError, match=r"ratings.csv: column rating expected Float64.*'rating': 'four'"):
        load_movielens(tiny_layouts["csv"])


def test_a_csv_without_the_expected_header_is_refused(tiny_layouts):
    (tiny_layouts["csv"] / "movies.csv").write_text("id,name\n1,x\n")
    with pytest.raises(SchemaError, match=r"movies.csv lacks column\(s\) \['movieId', 'title', 'genres'\]"):
        load_movielens(tiny_layouts["csv"])


def test_a_rating_of_an_unknown_movie_is_reported_not_dropped(tiny_layouts):
    ratings = tiny_layouts["100k"] / "u.data"
    ratings.write_text(ratings.read_text() + "3\t77\t5\t900000400\n")
    with pytest.raises(SchemaError, match=r"interactions.item_id.*unknown ids; 1 of 7.*'item_id': 77"):
        load_movielens(tiny_layouts["100k"])


def test_real_movielens_with_posters(movielens_root: Path):
    dataset = load_movielens_with_posters(movielens_root)
    assert dataset.interactions.height == 58_498
    assert dataset.items.height == 2_943
    assert dataset.users.height == 610
    assert dataset.items["image_path"].null_count() == 0
    validate_dataset(dataset)


@pytest.mark.parametrize(
    ("layout", "line", "message"),
    [
        (
            "csv",
            "4,1,5.5,900000100",
            r"ratings.csv: column rating expected a rating on the scale .*'rating': 5.5",
        ),
        ("csv", "4,1,0.0,900000100", r"column rating .*'rating': 0.0"),
        ("csv", "4,1,4.2,900000100", r"column rating .*'rating': 4.2"),
        (
            "100k",
            "4\t1\t0\t900000100",
            r"u.data: column rating expected a rating on the scale \[1.0, .*'rating': 0.0",
        ),
        ("dat", "4::1::6::900000100", r"ratings.dat: column rating .*row 7: .*'rating': 6.0"),
        (
            "csv",
            "-4,1,4.0,900000100",
            r"column user_id expected an id >= 1; 1 row\(s\) differ, e.g. row 7: .*-4",
        ),
        ("csv", "4,-1,4.0,900000100", r"column item_id expected an id >= 1"),
        ("csv", "4,1,4.0,9000", r"column timestamp expected unix seconds >= 788918400 .*'timestamp': 9000"),
        ("dat", "4::1::4::90", r"ratings.dat: column timestamp .*'timestamp': 90"),
    ],
)
def test_values_outside_the_dataset_ranges_are_refused(tiny_layouts, layout, line, message):
    ratings = next(
        p for p in tiny_layouts[layout].iterdir() if p.name in ("ratings.csv", "ratings.dat", "u.data")
    )
    ratings.write_text(ratings.read_text() + line + "\n")
    with pytest.raises(SchemaError, match=message):
        load_movielens(tiny_layouts[layout])


def test_a_negative_movie_id_in_the_catalogue_is_refused(tiny_layouts):
    movies = tiny_layouts["csv"] / "movies.csv"
    movies.write_text(movies.read_text() + "-7,Broken (2000),Drama\n")
    with pytest.raises(SchemaError, match=r"movies.csv: column item_id expected an id >= 1"):
        load_movielens(tiny_layouts["csv"])


def test_an_earlier_era_can_be_allowed(tiny_layouts):
    ratings = tiny_layouts["csv"] / "ratings.csv"
    ratings.write_text(ratings.read_text() + "4,1,4.0,9000\n")
    dataset = load_movielens(tiny_layouts["csv"], min_timestamp=0)
    assert dataset.interactions["timestamp"].min() == 9000
