"""Parse-time types for numeric command-line arguments: a bad value is one clear line and exit status 2.

argparse calls the type on the argument's text; the ArgumentTypeError raised here becomes
`icg-rec refresh: error: argument --steps: expected an integer >= 1, got '0'` and exit status 2,
before any file is read or model loaded. Standard library only: the CLI imports it at parse time.
"""

import argparse
import math
from collections.abc import Callable

SEED_MAX = 2**31 - 1  # the largest seed every backend takes (torch, numpy, faiss's int32)


def positive_int(text: str) -> int:
    """An integer >= 1 (steps, batch sizes, counts)."""
    return _bounded_int(text, 1, None)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (thread counts where 0 means inline)."""
    return _bounded_int(text, 0, None)


def seed(text: str) -> int:
    """A seed: an integer in [0, SEED_MAX]."""
    return _bounded_int(text, 0, SEED_MAX)


def non_negative_float(text: str) -> float:
    """A finite float >= 0 (guidance weights, scales)."""
    return _bounded_float(text, 0.0, math.inf)


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """A type accepting finite floats in [low, high]."""

    def parse(text: str) -> float:
        return _bounded_float(text, low, high)

    parse.__name__ = f"float in [{low:g}, {high:g}]"
    return parse


def _bounded_int(text: str, low: int, high: int | None) -> int:
    expected = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _bounded_float(text: str, low: float, high: float) -> float:
    expected = (
        f"a finite number >= {low:g}" if math.isinf(high) else f"a finite number in [{low:g}, {high:g}]"
    )
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not math.isfinite(value) or value < low or value > high:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value
