"""The README's own-data walk-through, executed verbatim on a catalogue made here (PNG covers from PIL)."""

import json
import re
import shlex
from pathlib import Path

import pytest

from icg_rec.cli import main
from icg_rec.data.toy import write_toy_catalogue
from icg_rec.pipeline.run import STAGES

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(marker: str) -> str:
    """The first fenced code block after `<!-- readme-test: {marker} -->` in README.md."""
    text = README.read_text()
    tag = f"<!-- readme-test: {marker} -->"
    assert tag in text, f"README.md lost its {tag} block"
    return re.search(r"```\w*\n(.*?)```", text.split(tag, 1)[1], re.S).group(1)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A folder with shop/{items.csv, interactions.csv, covers/*.png}: 50 items, 200 users, 5,000 impressions."""
    folder = tmp_path_factory.mktemp("readme")
    write_toy_catalogue(folder / "shop")
    return folder


def test_the_python_example_runs_as_written(shop, monkeypatch, capsys):
    monkeypatch.chdir(shop)
    exec(compile(readme_block("python"), str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "{'items': 50, 'cohorts': 4, 'generated': 250, 'cached': 0}" in printed
    assert (shop / "runs" / "shop" / "report.md").is_file()


def test_the_command_line_sequence_runs_as_written(shop, monkeypatch):
    monkeypatch.chdir(shop)
    if not (shop / "runs" / "shop" / "run.json").is_file():
        exec(compile(readme_block("python"), str(README), "exec"), {})  # the CLI's first line reruns it
    lines = [line for line in readme_block("cli").splitlines() if line.strip()]
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "icg-rec", line
        assert main(argv[1:]) == 0, line
    rerun = json.loads((shop / "runs" / "shop" / "run.json").read_text())["stages"]
    assert {name: entry["status"] for name, entry in rerun.items() if name != "ope"} == {
        name: "up to date" for name in STAGES if name != "ope"
    }
    steps = json.loads((shop / "runs" / "steps" / "run.json").read_text())["stages"]
    assert [steps[name]["status"] for name in STAGES] == ["ran"] * 8 + ["skipped", "ran"]
