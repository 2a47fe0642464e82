"""The device smoke script runs its checks on the CPU (its dry run) and reports each one."""

import re

from eval.gpu.smoke_device import main


def test_cpu_dry_run_of_some_heavy_classes(tmp_path, capsys):
    results = main(["--device", "cpu", "--checks", "relevance", "refresh", "--out", str(tmp_path / "s.json")])
    assert results["relevance"]["ok"] and results["refresh"]["ok"], results
    assert results["refresh"]["covers"] == 18 and results["refresh"]["unet"] == "cpu"
    assert capsys.readouterr().out.strip().splitlines()[-1] == "smoke: 2 ok, 0 failed (none), 0 skipped"
    assert re.search(r'"device": "cpu"', (tmp_path / "s.json").read_text())
