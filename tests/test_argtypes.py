"""Numeric command-line arguments are checked when parsed: one line naming the argument, exit status 2."""

import pytest

from icg_rec.cli import main

REFRESH = ["refresh", "--pipeline", "p", "--cohorts", "c", "--items", "i", "--out", "o"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*REFRESH, "--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
        ([*REFRESH, "--steps", "2.5"], "argument --steps: expected an integer >= 1, got '2.5'"),
        ([*REFRESH, "--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got '0'"),
        ([*REFRESH, "--batch-size", "-3"], "argument --batch-size: expected an integer >= 1, got '-3'"),
        ([*REFRESH, "--guidance", "nan"], "argument --guidance: expected a finite number >= 0, got 'nan'"),
        ([*REFRESH, "--guidance", "inf"], "argument --guidance: expected a finite number >= 0, got 'inf'"),
        ([*REFRESH, "--guidance", "-1"], "argument --guidance: expected a finite number >= 0, got '-1'"),
        ([*REFRESH, "--seed", "-1"], "argument --seed: expected an integer in [0, 2147483647], got '-1'"),
        (
            ["cohorts", "fit", "--users", "u", "--out", "o", "--n-cohorts", "0"],
            "argument --n-cohorts: expected an integer >= 1",
        ),
        (
            ["rewards", "score", "--images", "i", "--out", "o", "--batch-size", "0"],
            "argument --batch-size: expected an integer >= 1",
        ),
        (
            ["rewards", "score", "--images", "i", "--out", "o", "--image-size", "0"],
            "argument --image-size: expected an integer >= 1",
        ),
        (
            ["rewards", "train", "--out", "o", "--sim-users", "0"],
            "argument --sim-users: expected an integer >= 1",
        ),
        (["generator", "train", "--out", "o", "--steps", "0"], "argument --steps: expected an integer >= 1"),
        (["generator", "train", "--out", "o", "--items", "-5"], "argument --items: expected an integer >= 1"),
        (
            ["generator", "align", "--pipeline", "p", "--out", "o", "--items", "0"],
            "argument --items: expected an integer >= 1",
        ),
        (
            ["ranker", "fit", "--train", "t", "--sparse", "u", "--out", "o", "--seed", "x"],
            "argument --seed: expected an integer in [0, 2147483647], got 'x'",
        ),
        (["quickstart", "--seed", "99999999999"], "argument --seed: expected an integer in [0, 2147483647]"),
    ],
)
def test_a_bad_number_is_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
