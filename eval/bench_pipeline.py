"""`icg-rec run --preset tiny` on a toy own-data catalogue (50 items, 200 users, 5,000 impressions), then the
same command again: `python -m eval.bench_pipeline [--out out/bench_pipeline]`.

Both runs are subprocesses (interpreter start and imports included, as a user sees them) with a fresh
embedding cache; the box's load average is printed beside the times, since the dev box is shared.
Last line: tiny_seconds=... rerun_seconds=... rerun_up_to_date=... load_1min=...
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from icg_rec.data.toy import write_toy_catalogue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_pipeline", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out/bench_pipeline"))
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    items, log = write_toy_catalogue(args.out / "shop")
    (args.out / "fresh_cache.toml").write_text(f'[encode]\ncache_dir = "{(args.out / "cache").resolve()}"\n')
    command = [sys.executable, "-m", "icg_rec.cli", "run", "--items", str(items), "--interactions", str(log),
               "--out", str(args.out / "run"), "--preset", "tiny", "--config", str(args.out / "fresh_cache.toml")]  # fmt: skip
    seconds, loads = [], [os.getloadavg()[0]]
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds.append(time.perf_counter() - start)
        loads.append(os.getloadavg()[0])
    stages = json.loads((args.out / "run" / "run.json").read_text())["stages"]
    fresh = sum(entry["status"] == "up to date" for entry in stages.values())
    print(
        f"tiny_seconds={seconds[0]:.1f} rerun_seconds={seconds[1]:.1f} "
        f"rerun_up_to_date={fresh}/{len(stages) - 1} (ope skipped) load_1min={'/'.join(f'{x:.1f}' for x in loads)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
