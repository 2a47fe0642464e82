import ast
import importlib
import sys
from pathlib import Path

import pytest

import icg_rec
from icg_rec.cli import COMMANDS, build_parser, main

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
    ],
)
def test_every_command_parses(argv):
    assert callable(build_parser().parse_args(argv).run)


def test_an_unknown_command_exits_with_usage(capsys):
    with pytest.raises(SystemExit):
        main(["no-such-group"])
    assert "invalid choice" in capsys.readouterr().err
