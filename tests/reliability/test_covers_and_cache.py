"""Covers, their manifest and embedding cache entries, corrupted each way: recomputed and counted, or refused."""

import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from faults import CORRUPTIONS, assert_clear_error  # noqa: E402
from makers import ColourGenerator, refresh_inputs  # noqa: E402

from icg_rec.cohorts.cache import CoverCache  # noqa: E402
from icg_rec.cohorts.refresh import read_manifest, refresh_covers  # noqa: E402
from icg_rec.encoders import EmbeddingCache, ImageEncoder, TextEncoder, encode_cached  # noqa: E402
from icg_rec.encoders.cache import image_key, text_key  # noqa: E402
from icg_rec.errors import IcgRecError  # noqa: E402
from icg_rec.ranking.cover_arms import load_refreshed_covers  # noqa: E402

KEEP = ["item_id", "cohort_id", "key", "item_hash", "cohort_version", "generator_version", "seed", "sha256"]


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    """A finished refresh (5 items x (generic + 2 cohorts)) and its inputs."""
    root = tmp_path_factory.mktemp("refresh")
    items, cohorts = refresh_inputs(root / "img")
    manifest, _ = refresh_covers(items, cohorts, ColourGenerator(), root / "out", progress=False)
    return root / "out", items, cohorts, manifest


def _cover_bytes(folder: Path, manifest: pl.DataFrame) -> dict[str, bytes]:
    return {key: CoverCache(folder / "covers").path(key).read_bytes() for key in manifest["key"]}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("which", [0, 7, 14])
def test_a_corrupt_cover_is_regenerated_and_counted(refreshed, tmp_path, outcomes, corruption, which):
    original, items, cohorts, manifest = refreshed
    folder = shutil.copytree(original, tmp_path / "out")
    key = manifest["key"][which]
    cover = CoverCache(folder / "covers").path(key)
    CORRUPTIONS[corruption](cover)
    with pytest.raises(Exception) as err:  # readers refuse it before the rerun
        load_refreshed_covers(folder) if manifest["cohort_id"][which] >= 0 else CoverCache(
            folder / "covers"
        ).get(key, manifest["sha256"][which])
    assert_clear_error(err.value, key)
    generator = ColourGenerator()
    again, stats = refresh_covers(items, cohorts, generator, folder, progress=False)
    assert (stats.generated, generator.made) == (1, 1)
    assert stats.repaired == (0 if corruption == "missing" else 1)
    assert again.filter(pl.col("status") == "generated")["key"].to_list() == [key]
    assert again.select(KEEP).equals(manifest.select(KEEP))
    assert _cover_bytes(folder, again) == _cover_bytes(original, manifest)
    outcomes.recomputed()


def _flip_until_it_matters(path: Path, original: pl.DataFrame) -> None:
    """Flips one bit at a time from the middle on, until a flip changes what the file holds (most flips
    land in parquet statistics or padding and leave every value as it was: read back equal, nothing lost)."""
    data = path.read_bytes()
    for offset in range(len(data) // 2, len(data)):
        path.write_bytes(data[:offset] + bytes([data[offset] ^ 0x04]) + data[offset + 1 :])
        try:
            if read_manifest(path).equals(original):
                continue
        except IcgRecError:
            return
        raise AssertionError(f"a flipped bit at byte {offset} changed the manifest silently")
    raise AssertionError("no flipped bit was noticed")


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_manifest_is_refused_and_rebuilt_without_regenerating(
    refreshed, tmp_path, outcomes, corruption
):
    original, items, cohorts, manifest = refreshed
    folder = shutil.copytree(original, tmp_path / "out")
    if corruption == "bitflip":
        _flip_until_it_matters(folder / "manifest.parquet", read_manifest(original / "manifest.parquet"))
    else:
        CORRUPTIONS[corruption](folder / "manifest.parquet")
    with pytest.raises(Exception) as err:
        read_manifest(folder / "manifest.parquet")
    assert_clear_error(err.value, "manifest.parquet")
    with pytest.raises(Exception) as err:
        load_refreshed_covers(folder)
    assert_clear_error(err.value, "manifest.parquet")
    generator = ColourGenerator()
    again, stats = refresh_covers(items, cohorts, generator, folder, progress=False)
    assert (stats.generated, stats.repaired, generator.made) == (0, 0, 0)  # every cover decoded: all intact
    assert read_manifest(folder / "manifest.parquet").select(KEEP).equals(manifest.select(KEEP))
    outcomes.error()


class CountingText(TextEncoder):
    """Counts the texts it encodes."""

    name = "counting-text"
    dim = 4

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls += len(texts)
        return np.array([[len(t), t.count("a"), t.count("e"), 1.0] for t in texts], dtype=np.float32)


class CountingImage(ImageEncoder):
    """A seeded 1x1 conv + mean pool at 8 x 8; counts the images it encodes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.name, self.dim, self.image_size, self.calls = "counting-image", 3, 8, 0
        self.conv = torch.nn.Conv2d(3, 3, kernel_size=1)
        self.register_buffer("mean", torch.full((3, 1, 1), 0.5))
        self.register_buffer("std", torch.full((3, 1, 1), 0.25))
        self.freeze()

    def embed(self, normalised: torch.Tensor) -> torch.Tensor:
        return self.conv(normalised).mean(dim=(2, 3))  # (B, 3)

    def encode(self, images, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        self.calls += len(images)
        return super().encode(images, batch_size=batch_size, progress=progress)


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("kind", ["text", "image"])
def test_a_corrupt_cache_entry_is_recomputed_and_counted(tmp_path, outcomes, corruption, kind):
    cache = EmbeddingCache(tmp_path / "cache")
    if kind == "text":
        encoder, inputs = CountingText(), ["a cat", "the end", "sea"]
        key = text_key(encoder.name, inputs[1])
    else:
        for i in range(3):
            Image.new("RGB", (3, 3), (i * 60, 5, 5)).save(tmp_path / f"{i}.png")
        encoder, inputs = CountingImage(), [str(tmp_path / f"{i}.png") for i in range(3)]
        key = image_key(encoder.name, inputs[1])
    first = encode_cached(encoder, inputs, cache)
    CORRUPTIONS[corruption](cache.path(encoder.name, key))
    again = encode_cached(encoder, inputs, cache)
    np.testing.assert_array_equal(again, first)
    assert encoder.calls == 3 + 1  # only the damaged entry was encoded again
    assert cache.recomputed == (0 if corruption == "missing" else 1)  # a missing entry is a plain miss
    encode_cached(encoder, inputs, cache)
    assert encoder.calls == 4  # and it was written back whole
    outcomes.recomputed()


def test_cover_tensors_read_back_equal_what_was_generated(refreshed):
    folder, _, _, manifest = refreshed
    cache = CoverCache(folder / "covers")
    generic = manifest.filter(pl.col("cohort_id") == -1).row(2, named=True)
    expected = torch.full((3, 8, 8), round(2 * 0.013 * 255) / 255)
    torch.testing.assert_close(cache.get(generic["key"], generic["sha256"]), expected)
