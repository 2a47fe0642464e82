"""Ways a file goes bad, and what a clear error is (shared by the reliability tests)."""

import random
import shutil
from collections.abc import Callable
from pathlib import Path

from icg_rec.errors import IcgRecError


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(path.name).randbytes(path.stat().st_size))


def _bit_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))


def _missing(path: Path) -> None:
    path.unlink()


# How a file goes bad: half of it, all zeros, random bytes of the same length, one flipped bit, gone.
CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncate": _truncate,
    "zero": _zero,
    "random": _random_bytes,
    "bitflip": _bit_flip,
    "missing": _missing,
}


def artifact_files(folder: Path) -> list[str]:
    """Every file of a saved artifact folder, relative, sorted (MANIFEST.json included)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def copy_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def assert_clear_error(err: BaseException, *names: str) -> None:
    """A clear error: an icg_rec error (never a crash, KeyError or library traceback) naming the file."""
    assert isinstance(err, IcgRecError), f"{type(err).__name__}: {err}"
    assert any(name in str(err) for name in names), f"{err} names none of {names}"
