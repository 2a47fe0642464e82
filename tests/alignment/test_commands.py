import pytest

from icg_rec.alignment.commands import parse_weights
from icg_rec.cli import build_parser


def test_weights_parse_from_the_command_line():
    assert parse_weights("aesthetic=0.5, personalized=2") == {"aesthetic": 0.5, "personalized": 2.0}
    for bad in ("aesthetic", "aesthetic=high", "=1"):
        with pytest.raises(ValueError, match="is not name=number"):
            parse_weights(bad)


def test_generator_align_is_registered():
    args = build_parser().parse_args(
        ["generator", "align", "--pipeline", "p", "--out", "o", "--method", "dpo"]
    )
    assert args.method == "dpo" and args.weights is None and callable(args.run)
