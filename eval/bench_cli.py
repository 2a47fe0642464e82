"""`--help` time of `icg-rec` and of every subcommand, this tree side by side with an older commit.

    python -m eval.bench_cli [--baseline 495ad27] [--repeats 3]

Each help runs in a fresh interpreter (`python -m icg_rec.cli ... --help`), as a user's shell would; the
time is the best of `--repeats` runs (the baseline is run once: it is the slow side). The baseline is
the tree of `--baseline` (default: the last commit before lazy imports), extracted with `git archive`
into a temporary folder. A "-" marks a command the baseline does not have. Last line:
`help_s=X`, the slowest help of this tree, in seconds.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    [],
    ["data", "describe"],
    ["sim", "generate"],
    ["ranker", "fit"],
    ["rewards", "train"],
    ["rewards", "score"],
    ["generator", "train"],
    ["generator", "export-ip-adapter"],
    ["generator", "align"],
    ["cohorts", "fit"],
    ["refresh"],
    ["ab", "plan"],
    ["quickstart"],
    ["ope"],
    ["doctor"],
]


def help_seconds(tree: Path, command: list[str], repeats: int) -> float | None:
    """Best wall time of `python -m icg_rec.cli <command> --help` with `tree` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "icg_rec.cli", *command, "--help"], env=env, capture_output=True, cwd=tree
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            return None
        best = seconds if best is None else min(best, seconds)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_cli", description=__doc__)
    parser.add_argument("--baseline", default="495ad27", help="git commit to compare with")
    parser.add_argument("--repeats", type=int, default=3, help="runs per help of this tree (best is kept)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline, "icg_rec"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        print(f"{'command':<30} {'this tree s':>12} {args.baseline + ' s':>14} {'ratio':>7}")
        slowest = 0.0
        for command in COMMANDS:
            new = help_seconds(ROOT, command, args.repeats)
            if new is None:
                raise SystemExit(f"icg-rec {' '.join(command)} --help failed in this tree")
            before = help_seconds(Path(old), command, 1)
            slowest = max(slowest, new)
            name = " ".join(command) or "(top level)"
            old_text = f"{before:14.2f}" if before else f"{'-':>14}"
            ratio = f"{before / new:6.1f}x" if before else f"{'-':>7}"
            print(f"{name:<30} {new:12.2f} {old_text} {ratio}")
    print(f"help_s={slowest:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
