"""The reliability suite: every artifact corrupted every way, every long writer killed at a random point.

Each passing case is counted by kind; the run ends with one line (and `RELIABILITY_JSON`, if set, gets
the counts), e.g. `python -m pytest tests/reliability -p no:cacheprovider`:

    reliability: 250 cases tried, 200 clear errors, 40 recomputations, 10 kills survived, nothing lost
"""

import json
import os
from collections import Counter
from pathlib import Path

import pytest


class Outcomes:
    """Counts of what the passing cases showed: each case records one outcome."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def error(self) -> None:
        """The case ended in a clear error."""
        self.counts["cases"] += 1
        self.counts["clear errors"] += 1

    def recomputed(self, n: int = 1) -> None:
        """The case ended in `n` counted recomputations and outputs equal to the originals."""
        self.counts["cases"] += 1
        self.counts["recomputations"] += n

    def kill_survived(self) -> None:
        """A killed writer's rerun finished with every output present once and as an unkilled run's."""
        self.counts["cases"] += 1
        self.counts["kills survived"] += 1


_OUTCOMES = Outcomes()


@pytest.fixture
def outcomes() -> Outcomes:
    """Record what this case showed, after its assertions passed."""
    return _OUTCOMES


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = _OUTCOMES.counts
    if not counts:
        return
    reports = terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", [])
    failed = sum("tests/reliability/" in getattr(r, "nodeid", "") for r in reports)
    tried = counts["cases"] + failed
    line = (
        f"reliability: {tried} cases tried, {counts['clear errors']} clear errors, "
        f"{counts['recomputations']} recomputations, {counts['kills survived']} kills survived, "
        + ("nothing lost" if failed == 0 else f"{failed} case(s) FAILED")
    )
    terminalreporter.write_line(line)
    if path := os.environ.get("RELIABILITY_JSON"):
        summary = {"tried": tried, **{k: v for k, v in counts.items() if k != "cases"}, "failed": failed}
        Path(path).write_text(json.dumps(summary, indent=2) + "\n")
