"""Tiny MovieLens folders in all three layouts, written into tmp_path, with the same content."""

from pathlib import Path

import pytest
from PIL import Image

# (movieId, title, genres); titles carry a comma, a colon and a latin-1 letter on purpose.
MOVIES = [
    (1, "Toy Story (1995)", "Animation|Children's|Comedy"),
    (2, "Amélie (2001)", "Comedy|Romance"),
    (3, "Big, Bad Movie (1999)", "Action|Thriller"),
    (4, "Star Wars: Episode IV (1977)", "Action|Adventure|Sci-Fi"),
]
# (userId, movieId, rating, timestamp); 900_000_000 s is 1998-07-09, inside MovieLens' era.
RATINGS = [
    (1, 1, 4.0, 900_000_100),
    (1, 2, 3.0, 900_000_200),
    (1, 3, 5.0, 900_000_300),
    (2, 1, 2.0, 900_000_150),
    (2, 4, 4.0, 900_000_250),
    (3, 3, 1.0, 900_000_050),
]
ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
]  # fmt: skip


def write_csv_layout(folder: Path) -> Path:
    folder.mkdir(parents=True)
    movies = ["movieId,title,genres"] + [f'{i},"{t}",{g}' for i, t, g in MOVIES]
    (folder / "movies.csv").write_text("\n".join(movies) + "\n", encoding="utf-8")
    ratings = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r},{ts}" for u, i, r, ts in RATINGS]
    (folder / "ratings.csv").write_text("\n".join(ratings) + "\n")
    return folder


def write_dat_layout(folder: Path) -> Path:
    folder.mkdir(parents=True)
    movies = [f"{i}::{t}::{g}" for i, t, g in MOVIES]
    (folder / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    ratings = [f"{u}::{i}::{int(r)}::{ts}" for u, i, r, ts in RATINGS]
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n")
    return folder


def write_100k_layout(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for i, title, genres in MOVIES:
        flags = ["1" if g in genres.split("|") else "0" for g in ML100K_GENRES]
        lines.append("|".join([str(i), title, "01-Jan-1995", "", "http://example.org", *flags]))
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    ratings = [f"{u}\t{i}\t{int(r)}\t{ts}" for u, i, r, ts in RATINGS]
    (folder / "u.data").write_text("\n".join(ratings) + "\n")
    return folder


def write_posters(folder: Path, movie_ids: list[int]) -> Path:
    folder.mkdir(parents=True)
    for movie_id in movie_ids:
        Image.new("RGB", (6, 9), (movie_id * 40, 0, 0)).save(folder / f"{movie_id}.jpg")
    (folder / "notes.txt").write_text("not a poster")
    return folder


@pytest.fixture
def tiny_movielens(tmp_path: Path) -> Path:
    """A MovieLens root: ml-latest-small/ (CSV) and posters/ for movies 1 and 3 plus an unmatched 99."""
    write_csv_layout(tmp_path / "ml-latest-small")
    write_posters(tmp_path / "posters", [1, 3, 99])
    return tmp_path


@pytest.fixture
def tiny_layouts(tmp_path: Path) -> dict[str, Path]:
    """The same ratings and movies as ml-latest-small (CSV), ml-1m (.dat) and ml-100k folders."""
    return {
        "csv": write_csv_layout(tmp_path / "ml-latest-small"),
        "dat": write_dat_layout(tmp_path / "ml-1m"),
        "100k": write_100k_layout(tmp_path / "ml-100k"),
    }
