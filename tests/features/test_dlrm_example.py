import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "add_cover_features_to_dlrm.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_adding_covers_to_torchrecs_dlrm_takes_at_most_ten_lines():
    marked = [line for line in EXAMPLE.read_text().splitlines() if "# + covers" in line]
    assert 0 < len(marked) <= 10, marked


def test_the_example_trains_under_torchrun_and_shows_the_lift_with_its_ci():
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside the Python interpreter")
    command = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
    ]
    command += [str(EXAMPLE), "--users", "800", "--items", "150", "--impressions", "30", "--epochs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(EXAMPLE.parents[1])}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    exact, fallback, missing = map(
        int, re.search(r"exact (\d+), fallback .* (\d+), missing (\d+)", done.stdout).groups()
    )
    assert exact > 0 and fallback > 0 and missing == 0  # half of the (item, cohort) pairs were refreshed
    delta, low, high = map(float, re.search(r"auc_delta=(\S+) ci95=\[(\S+), (\S+)\]", done.stdout).groups())
    assert 0 < low < delta < high  # this tiny world: +0.029 (CI +0.018 to +0.042)
