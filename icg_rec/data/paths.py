"""Where the research data lives: ICG_REC_DATA_DIR, else ../shared/data beside the checkout."""

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    """The data root: `$ICG_REC_DATA_DIR` if set, else `../shared/data` next to the repository.

    Returns:
        The path (it may not exist; callers check and say so).
    """
    if env := os.environ.get("ICG_REC_DATA_DIR"):
        return Path(env)
    return _REPO_ROOT.parent / "shared" / "data"


def movielens_dir() -> Path:
    """`<data root>/movielens`, holding ml-latest-small/, posters/ and ml-1m/."""
    return default_data_dir() / "movielens"


def taef2_dir() -> Path:
    """`<data root>/../models/taef2`: TAEF2 tiny-autoencoder weights (research use: read, never copied)."""
    return default_data_dir().parent / "models" / "taef2"
