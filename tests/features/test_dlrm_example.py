import os
import re
import subprocess
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "add_cover_features_to_dlrm.py"


def test_adding_covers_to_torchrecs_dlrm_takes_at_most_ten_lines():
    marked = [line for line in EXAMPLE.read_text().splitlines() if "# + covers" in line]
    assert 0 < len(marked) <= 10, marked


def test_the_example_trains_under_torchrun_and_shows_the_lift_with_its_ci(torchrun):
    arguments = ["--users", "800", "--items", "150", "--impressions", "30", "--epochs", "2"]
    command = [*torchrun, str(EXAMPLE), *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(EXAMPLE.parents[1])}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    exact, fallback, missing = map(
        int, re.search(r"exact (\d+), fallback .* (\d+), missing (\d+)", done.stdout).groups()
    )
    assert exact > 0 and fallback > 0 and missing == 0  # half of the (item, cohort) pairs were refreshed
    delta, low, high = map(float, re.search(r"auc_delta=(\S+) ci95=\[(\S+), (\S+)\]", done.stdout).groups())
    assert 0 < low < delta < high  # this tiny world: +0.029 (CI +0.018 to +0.042)
