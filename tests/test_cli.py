import ast
import importlib
import sys
from pathlib import Path

import pytest

import icg_rec
from icg_rec.cli import COMMANDS, build_parser, console_main, main

PACKAGE = Path(icg_rec.__file__).parent


def _module_level_imports(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*/cli.py")) + [PACKAGE / "cli.py"], ids=str)
def test_registration_modules_import_only_the_standard_library_at_module_level(path):
    heavy = [
        name for name in _module_level_imports(path) if name.split(".")[0] not in sys.stdlib_module_names
    ]
    assert heavy == [], (
        f"{path} imports {heavy} at module level; import them inside the command's run function"
    )


def test_every_package_registration_is_listed():
    registered = {
        f"icg_rec.{p.parent.name}.cli" for p in PACKAGE.glob("*/cli.py") if p.parent.name != "alignment"
    }
    assert registered == set(COMMANDS)
    assert all(callable(importlib.import_module(m).register) for m in COMMANDS)


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "describe"],
        ["sim", "generate", "--out", "o"],
        ["ranker", "fit", "--train", "t", "--sparse", "u", "--out", "o"],
        ["rewards", "train", "--out", "o"],
        ["rewards", "score", "--images", "i", "--out", "o"],
        ["generator", "train", "--out", "o"],
        ["generator", "export-ip-adapter", "--pipeline", "p", "--out", "o"],
        ["generator", "align", "--pipeline", "p", "--out", "o"],
        ["cohorts", "fit", "--users", "u", "--out", "o"],
        ["refresh", "--pipeline", "p", "--cohorts", "c", "--items", "i", "--out", "o"],
        ["ab", "plan", "--interactions", "l", "--items", "i", "--manifest", "m", "--out", "o"],
        ["quickstart"],
        ["run", "--items", "i", "--interactions", "l", "--out", "o", "--preset", "tiny", "--device", "cuda"],
        ["stage", "encode", "--run", "r"],
        ["lift", "--dataset", "simworld"],
    ],
)
def test_every_command_parses(argv):
    assert callable(build_parser().parse_args(argv).run)


def test_an_unknown_command_exits_with_usage(capsys):
    with pytest.raises(SystemExit):
        main(["no-such-group"])
    assert "invalid choice" in capsys.readouterr().err


def test_help_says_what_the_tool_does_and_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "personalized item covers for your recommender system" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["rewards", "score", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE (default: 32)" in help_text
    assert "--out OUT parquet of scores, one row per cover" in help_text  # required: no "(default: None)"


def test_a_parse_error_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        console_main(["cohorts", "fit", "--users", "u.parquet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "icg-rec cohorts fit: error: the following arguments are required: --out (see icg-rec cohorts fit --help)"
    ]


def test_a_refused_input_is_one_line_and_exit_2_never_a_traceback(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\nx.png\n")
    argv = ["rewards", "score", "--manifest", str(manifest), "--out", str(tmp_path / "s.parquet")]
    assert console_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("icg-rec: error: manifest ") and "has no image_path column" in err
    assert len(err.strip().splitlines()) == 1


def test_the_pipeline_commands_list_every_stage_and_preset():
    from icg_rec.pipeline import cli, presets, run

    assert cli.STAGES == run.STAGES and cli.PRESETS == presets.PRESETS
