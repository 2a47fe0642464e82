"""The reliability table: runs tests/reliability and prints what its cases showed, as Markdown.

    python -m eval.reliability [--out reliability.json]

Every artifact the library writes is corrupted each way (truncate, zeros, random bytes, a flipped bit,
missing, a file of another save) and every long writer is killed with SIGKILL at a seeded random
point; a case passes on a clear error naming the file, a counted recomputation equal to the original,
or a rerun whose outputs are present once and equal an uninterrupted run's. The last line is
`tried=N clear_errors=E recomputations=R kills_survived=K failed=F`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="also write the counts as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        counts_path = Path(tmp) / "counts.json"
        env = {**os.environ, "RELIABILITY_JSON": str(counts_path)}
        start = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"],
            cwd=REPO,
            env=env,
        )
        seconds = time.perf_counter() - start
        counts = json.loads(counts_path.read_text()) if counts_path.is_file() else {"tried": 0, "failed": 1}
    counts = {
        key: counts.get(key, 0)
        for key in ("tried", "clear errors", "recomputations", "kills survived", "failed")
    }
    print("\n| cases tried | clear errors | recomputations | kills survived | nothing lost |")
    print("|---|---|---|---|---|")
    lost = "yes" if counts["failed"] == 0 and run.returncode == 0 else f"NO ({counts['failed']} failed)"
    print(
        f"| {counts['tried']} | {counts['clear errors']} | {counts['recomputations']} | "
        f"{counts['kills survived']} | {lost} |\n\n({seconds:.0f} s)"
    )
    if args.out is not None:
        args.out.write_text(json.dumps({**counts, "seconds": seconds}, indent=2) + "\n")
    print(" ".join(f"{key.replace(' ', '_')}={value}" for key, value in counts.items()))
    return 0 if lost == "yes" else 1


if __name__ == "__main__":
    sys.exit(main())
